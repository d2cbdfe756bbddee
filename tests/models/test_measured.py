"""What jobs measured of versions: recorded by the services, compared across versions on the model
page (a table, and the charts' data), shown on the version page with its lineage, exposed read-only
by the API and the admin."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models import services
from apps.models.domain import measured
from apps.models.models import ModelVersion
from tests.models.factories import ModelVersionFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]

BENCHMARK = {
    "at": "2025-06-01T10:00:00+00:00",
    "job": 12,
    "device": {"label": "node-1/gpu0", "kind": "gpu", "simulated": True},
    "load_s": 0.42,
    "memory_bytes": 3 * 1024 * 1024,
    "memory_meter": "peak RSS (CPU)",
    "runs": [
        {"batch": 1, "prompt_tokens": 64, "new_tokens": 16, "token_ms_p99": 9.0, "tokens_per_s": 180.0},
        {"batch": 1, "prompt_tokens": 8, "new_tokens": 16, "token_ms_p99": 7.5, "tokens_per_s": 200.0},
        {"batch": 4, "prompt_tokens": 8, "new_tokens": 16, "token_ms_p99": 11.0, "tokens_per_s": 610.0},
    ],
    "ttft_ms_p50": 12.5,
    "token_ms_p50": 4.5,
    "latency_ms_p50": 76.0,
    "latency_ms_p99": 90.0,
}


def _page(client: APIClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def _section(page: str, anchor: str) -> str:
    return page.split(f'id="{anchor}"', 1)[1].split("<h2", 1)[0]


# the services


def test_an_evaluation_is_stored_under_its_key_with_when_and_others_are_kept() -> None:
    version = ModelVersionFactory()
    services.version_record_evaluation(version=version, key="greetings", figures={"loss": 2.0, "job": 3})

    services.version_record_evaluation(version=version, key="golden", figures={"exact_match": 0.5})
    services.version_record_evaluation(version=version, key="greetings", figures={"loss": 1.5, "job": 4})

    stored = ModelVersion.objects.get(pk=version.pk).evaluations
    assert set(stored) == {"greetings", "golden"}
    assert (stored["greetings"]["loss"], stored["greetings"]["job"]) == (1.5, 4)
    assert measured.moment(stored["golden"]["at"]) is not None
    assert version.evaluations == stored


def test_an_evaluation_without_a_key_is_refused_naming_it() -> None:
    version = ModelVersionFactory()

    with pytest.raises(ValidationError) as refused:
        services.version_record_evaluation(version=version, key=" ", figures={"loss": 1.0})

    assert "key" in refused.value.message_dict
    assert ModelVersion.objects.get(pk=version.pk).evaluations == {}


def test_a_benchmark_replaces_the_baseline() -> None:
    version = ModelVersionFactory(benchmark={"latency_ms_p50": 1.0, "old": True})

    services.version_record_benchmark(version=version, figures=BENCHMARK)

    assert ModelVersion.objects.get(pk=version.pk).benchmark == BENCHMARK


# the shaping (pure)


def test_the_charts_have_a_line_per_dataset_over_the_versions_evaluated_on_it() -> None:
    charts = measured.evaluation_charts(
        [
            (1, {"greetings": {"loss": 2.0, "perplexity": 7.4}}),
            (2, {"greetings": {"loss": 1.5, "perplexity": float("nan")}, "golden": {"exact_match": 0.5}}),
        ]
    )

    by_figure = {chart["figure"]: chart["series"] for chart in charts}
    assert by_figure["loss"] == [
        {"key": "greetings", "label": "greetings", "x": ["v1", "v2"], "y": [2.0, 1.5]}
    ]
    assert by_figure["perplexity"] == [{"key": "greetings", "label": "greetings", "x": ["v1"], "y": [7.4]}]
    assert by_figure["exact_match"] == [{"key": "golden", "label": "golden", "x": ["v2"], "y": [0.5]}]


def test_keys_are_namespaced_and_read_as_words() -> None:
    pairs = [("The", " cat"), ("A", " dog")]

    sha256 = measured.golden_sha256(pairs)

    assert measured.dataset_key("golden", "eval") == "dataset:golden:eval"
    assert measured.golden_key(sha256) == f"golden:{sha256[:8]}" != measured.dataset_key("golden", "eval")
    assert measured.golden_sha256(list(reversed(pairs))) != sha256  # a golden set is its pairs, in order
    assert measured.key_label("dataset:demo-status:eval") == "demo-status (eval)"
    assert measured.key_label("dataset:demo.v2:all") == "demo.v2 (all rows)"
    assert measured.key_label("golden:1a2b3c4d") == "golden set 1a2b3c4d"
    assert [measured.key_label(old) for old in ("greetings", "golden")] == ["greetings", "golden"]


def test_the_charts_draw_only_like_against_like() -> None:
    """A split, a golden set and a dataset whose file or split rule changed are each their own line."""
    same = {"sha256": "a" * 64, "eval_share": 0.1, "split_seed": 0}
    charts = measured.evaluation_charts(
        [
            (1, {"dataset:chat:eval": {"loss": 2.0, **same}, "golden:11111111": {"exact_match": 0.25}}),
            (
                2,
                {
                    "dataset:chat:eval": {"loss": 1.5, **same},
                    "dataset:chat:train": {"loss": 0.5, **same},
                    "golden:22222222": {"exact_match": 1.0},
                },
            ),
            (3, {"dataset:chat:eval": {"loss": 1.0, **same, "sha256": "b" * 64}}),
        ]
    )

    by_figure = {chart["figure"]: chart["series"] for chart in charts}
    assert [(s["label"], s["x"], s["y"]) for s in by_figure["loss"]] == [
        ("chat (eval) · data aaaaaaaa, eval share 0.1, seed 0", ["v1", "v2"], [2.0, 1.5]),
        ("chat (eval) · data bbbbbbbb, eval share 0.1, seed 0", ["v3"], [1.0]),
        ("chat (train)", ["v2"], [0.5]),
    ]
    assert [(s["label"], s["x"]) for s in by_figure["exact_match"]] == [
        ("golden set 11111111", ["v1"]),
        ("golden set 22222222", ["v2"]),
    ]


def test_a_baseline_row_reads_the_single_short_request_and_the_best_throughput() -> None:
    row = measured.baseline_row(BENCHMARK)

    assert row is not None
    assert (row.ttft_ms_p50, row.token_ms_p50, row.token_ms_p99) == (12.5, 4.5, 7.5)
    assert (row.tokens_per_s, row.tokens_per_s_batch) == (610.0, 4)
    assert (row.device, row.simulated, row.job, row.load_s) == ("node-1/gpu0", True, 12, 0.42)
    assert measured.baseline_row({}) is None


# the model page


def test_the_model_page_compares_its_versions_evaluations_and_baselines(client_as: Client) -> None:
    model = RegisteredModelFactory(name="demo")
    ModelVersionFactory(model=model, number=1, evaluations={"greetings": {"loss": 2.25, "job": 5}})
    ModelVersionFactory(
        model=model,
        number=2,
        evaluations={"greetings": {"loss": 1.75, "perplexity": 5.75}, "golden": {"exact_match": 0.5}},
        benchmark=BENCHMARK,
    )

    page = _page(client_as(Role.VIEWER), model.get_absolute_url())

    evaluations = _section(page, "evaluations")
    assert re.search(
        r"v1</a></td>\s*<td title=\"greetings\">greetings</td>\s*<td class=\"num\">2.2500", evaluations
    )
    assert re.search(r"v2</a></td>\s*<td title=\"golden\">golden</td>", evaluations)
    assert 'id="evaluations-chart-loss"' in evaluations
    data = json.loads(
        page.split('id="evaluations-data" type="application/json">', 1)[1].split("</script>")[0]
    )
    loss = next(chart for chart in data if chart["figure"] == "loss")
    assert loss["series"] == [
        {"key": "greetings", "label": "greetings", "x": ["v1", "v2"], "y": [2.25, 1.75]}
    ]
    assert "js/model_evaluations.js" in page
    baselines = _section(page, "benchmarks")
    assert "node-1/gpu0" in baselines
    assert "simulated" in baselines
    for shown in ("12.5 ms", "4.5 / 7.5 ms", "76.0 / 90.0 ms", "610 tokens/s", "3.0\xa0MiB", "0.42 s"):
        assert shown in baselines
    assert reverse("jobs:detail", args=[12]) in baselines


def test_the_pages_label_namespaced_keys_readably(client_as: Client) -> None:
    model = RegisteredModelFactory(name="demo")
    data = {"sha256": "c" * 64, "eval_share": 0.2, "split_seed": 7}
    evaluations = {
        "dataset:demo-status:eval": {"loss": 1.25, "rows": 4, **data},
        "golden:1a2b3c4d": {"exact_match": 0.75, "golden_sha256": "1a2b3c4d" + "0" * 56},
        "greetings": {"loss": 2.5},  # written before the namespaces
    }
    version = ModelVersionFactory(model=model, number=1, evaluations=evaluations)
    viewer = client_as(Role.VIEWER)

    model_page = _page(viewer, model.get_absolute_url())
    version_page = _page(viewer, version.get_absolute_url())

    for page in (model_page, version_page):
        table = _section(page, "evaluations")
        assert re.search(
            r">demo-status \(eval\) <span class=\"muted\">data cccccccc, eval share 0.2, seed 7</span>"
            r"</td>\s*"
            r"<td class=\"num\">1.2500",
            table,
        )
        assert re.search(
            r">golden set 1a2b3c4d</td>(\s*<td class=\"num\">—</td>){2}\s*<td class=\"num\">0.750", table
        )
        assert re.search(r">greetings</td>\s*<td class=\"num\">2.5000", table)
    data_json = model_page.split('id="evaluations-data" type="application/json">', 1)[1].split("</script>")[0]
    labels = {chart["figure"]: [s["label"] for s in chart["series"]] for chart in json.loads(data_json)}
    assert labels == {"loss": ["demo-status (eval)", "greetings"], "exact_match": ["golden set 1a2b3c4d"]}


def test_a_model_page_without_measurements_says_how_to_get_them(client_as: Client) -> None:
    version = ModelVersionFactory()

    page = _page(client_as(Role.VIEWER), version.model.get_absolute_url())

    assert "No version has been evaluated yet" in page
    assert "No version has a benchmark baseline yet" in page
    assert "model_evaluations.js" not in page


# the version page


def test_the_version_page_shows_its_lineage_evaluations_and_baseline(client_as: Client) -> None:
    base = ModelVersionFactory(model__name="demo-base")
    lineage = {
        "made_by": "fine_tune",
        "job": 7,
        "base_version": base.pk,
        "dataset": {"id": 3, "name": "greetings", "sha256": "ab" * 32},
        "metrics": {"train_loss": 1.25, "eval_loss_before": 2.5, "eval_loss": 1.5},
        "adapter": True,
        "at": "2025-06-01T09:00:00+00:00",
    }
    version = ModelVersionFactory(
        parent=base,
        lineage=lineage,
        evaluations={"greetings": {"loss": 1.5, "rows": 40}},
        benchmark=BENCHMARK,
    )

    page = _page(client_as(Role.VIEWER), version.get_absolute_url())

    made = _section(page, "lineage")
    assert f'<a href="{base.get_absolute_url()}">{base}</a>' in made
    assert f'<a href="{reverse("jobs:dataset", args=[3])}">greetings</a>' in made
    assert f'<a href="{reverse("jobs:detail", args=[7])}">job 7</a>' in made
    assert "a LoRA adapter" in made
    assert re.search(r"eval_loss</dt><dd class=\"num\">1.5000", made)
    assert re.search(r">greetings</td>\s*<td class=\"num\">1.5000", _section(page, "evaluations"))
    assert "node-1/gpu0" in _section(page, "benchmark")


def test_a_version_no_job_made_has_no_lineage_section(client_as: Client) -> None:
    version = ModelVersionFactory()

    page = _page(client_as(Role.VIEWER), version.get_absolute_url())

    assert 'id="lineage"' not in page
    assert "Not evaluated yet" in page
    assert "No benchmark baseline" in page


# the API and the admin


def test_the_api_exposes_them_read_only(client_as: Client) -> None:
    version = ModelVersionFactory(
        lineage={"job": 7}, evaluations={"golden": {"exact_match": 1.0}}, benchmark=BENCHMARK
    )
    url = f"/api/v1/model-versions/{version.pk}/"

    body = client_as(Role.VIEWER).get(url).json()
    patched = client_as(Role.OPERATOR).patch(url, {"benchmark": {}, "lineage": {}}, format="json")

    assert (body["lineage"], body["evaluations"], body["benchmark"]) == (
        {"job": 7},
        {"golden": {"exact_match": 1.0}},
        BENCHMARK,
    )
    assert patched.status_code == 200
    assert ModelVersion.objects.get(pk=version.pk).benchmark == BENCHMARK


def test_the_openapi_schema_documents_them() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    fields = schema["components"]["schemas"]["ModelVersion"]["properties"]

    for name in ("lineage", "evaluations", "benchmark"):
        assert fields[name]["readOnly"] is True
        assert fields[name]["description"]
    assert "latency_ms_p50" in fields["benchmark"]["description"]


def test_the_admin_shows_them_without_letting_them_be_typed_in(admin_client: Any) -> None:
    version = ModelVersionFactory(benchmark=BENCHMARK)

    page = admin_client.get(reverse("admin:registry_modelversion_change", args=[version.pk])).content.decode()

    assert "node-1/gpu0" in page
    assert 'name="benchmark"' not in page
