import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ScanState, ValidationState
from apps.models.models import ModelAlias, ModelVersion, RegisteredModel, ScanRun
from tests.models.factories import (
    ModelAliasFactory,
    ModelFileFactory,
    ModelVersionFactory,
    RegisteredModelFactory,
)

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]

REPORT = [
    {"check": "header_size", "status": "pass", "detail": "header of 412 bytes", "file": "model.safetensors"},
    {
        "check": "pickle_scan",
        "status": "warn",
        "detail": "pickle-based: only a conversion may use it",
        "file": "",
    },
    {"check": "offsets_contiguous", "status": "fail", "detail": "tensor b overlaps tensor a", "file": "w.st"},
]
VRAM = {
    "weights": 1_000_000_000,
    "overhead": 536_870_912,
    "kv_cache": 268_435_456,
    "total": 1_805_306_368,
    "context": 4096,
    "batch": 2,
}


def _page(client: APIClient, url: str, data: dict | None = None) -> str:
    response = client.get(url, data)
    assert response.status_code == 200
    return response.content.decode()


def _rows(page: str) -> str:
    """The list's table body, without the filter bar (whose choices name every format)."""
    return page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]


# The models list


def test_models_list_loads_for_a_viewer(client_as: Client) -> None:
    RegisteredModelFactory(name="llama", tags=["llm"])

    assert "llama" in _page(client_as(Role.VIEWER), reverse("models:list"))


def test_models_list_sends_anonymous_visitors_to_log_in(client_as: Client) -> None:
    response = client_as(None).get(reverse("models:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_models_list_when_empty_explains_the_model_roots_the_demo_command_and_scan_now(
    client_as: Client, settings: object
) -> None:
    settings.MOC_MODEL_ROOTS = ["/srv/models-here"]

    page = _page(client_as(Role.OPERATOR), reverse("models:list"))

    assert "MOC_MODEL_ROOTS" in page
    assert "/srv/models-here" in page
    assert "python manage.py models_demo" in page
    assert "Scan now" in page


def test_models_list_when_empty_tells_a_viewer_to_ask_an_operator_to_scan(client_as: Client) -> None:
    page = _page(client_as(Role.VIEWER), reverse("models:list"))

    assert "ask an operator to press Scan now" in page
    assert reverse("models:scan_now") not in page


def test_models_list_shows_the_latest_versions_format_size_parameters_and_validation(
    client_as: Client,
) -> None:
    model = RegisteredModelFactory(name="llama")
    ModelVersionFactory(model=model, number=1, format=ModelFormat.ONNX)
    ModelVersionFactory(
        model=model,
        number=2,
        format=ModelFormat.GGUF,
        kind="causal-lm",
        size_bytes=4_200_000_000,
        params_count=7_000_000_000,
        validation_state=ValidationState.INVALID,
    )

    page = _page(client_as(Role.VIEWER), reverse("models:list"))

    assert "v2" in page
    assert "GGUF" in page
    assert "causal-lm" in page
    assert "3.9\xa0GiB" in page
    assert "7.0 billion" in page
    assert "Invalid" in page
    assert "ONNX" not in _rows(page)


def test_models_list_leaves_archived_versions_out_of_the_latest(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama")
    ModelVersionFactory(model=model, number=1, format=ModelFormat.ONNX)
    ModelVersionFactory(model=model, number=2, format=ModelFormat.GGUF, archived=True)

    page = _page(client_as(Role.VIEWER), reverse("models:list"))

    assert "ONNX" in _rows(page)
    assert "GGUF" not in _rows(page)


def test_models_list_searches_by_tag(client_as: Client) -> None:
    RegisteredModelFactory(name="chatty", tags=["chat"])
    RegisteredModelFactory(name="encoder", tags=["embedding"])

    page = _page(client_as(Role.VIEWER), reverse("models:list"), {"q": "chat"})

    assert "chatty" in page
    assert "encoder" not in page


def test_models_list_searches_descriptions(client_as: Client) -> None:
    RegisteredModelFactory(name="first", description="Speaks Welsh")
    RegisteredModelFactory(name="second", description="Counts sheep")

    page = _page(client_as(Role.VIEWER), reverse("models:list"), {"q": "welsh"})

    assert "first" in page
    assert "second" not in page


@pytest.mark.parametrize(
    ("param", "value"),
    [("validation_state", "invalid"), ("model_format", "gguf"), ("kind", "embedding")],
)
def test_models_list_filters_on_what_the_latest_version_is(client_as: Client, param: str, value: str) -> None:
    wanted = RegisteredModelFactory(name="wanted")
    ModelVersionFactory(model=wanted, number=1, validation_state="invalid", format="gguf", kind="embedding")
    # Matched only by an older version: the row shows the latest, so it must not match.
    older = RegisteredModelFactory(name="superseded")
    ModelVersionFactory(model=older, number=1, validation_state="invalid", format="gguf", kind="embedding")
    ModelVersionFactory(model=older, number=2, validation_state="valid", format="onnx", kind="onnx-graph")

    page = _page(client_as(Role.VIEWER), reverse("models:list"), {param: value})

    assert "wanted" in _rows(page)
    assert "superseded" not in _rows(page)


def test_models_list_filters_archived_models(client_as: Client) -> None:
    RegisteredModelFactory(name="kept")
    RegisteredModelFactory(name="shelved", archived=True)

    page = _page(client_as(Role.VIEWER), reverse("models:list"), {"archived": "false"})

    assert "kept" in page
    assert "shelved" not in page


def test_models_list_when_nothing_matches_offers_to_clear_the_filters(client_as: Client) -> None:
    RegisteredModelFactory(name="llama")

    page = _page(client_as(Role.VIEWER), reverse("models:list"), {"q": "nothing-like-it"})

    assert "Nothing matches these filters" in page


def test_models_list_shows_scan_now_to_operators_only(client_as: Client) -> None:
    RegisteredModelFactory(name="llama")

    assert reverse("models:scan_now") in _page(client_as(Role.OPERATOR), reverse("models:list"))
    assert reverse("models:scan_now") not in _page(client_as(Role.VIEWER), reverse("models:list"))


def test_models_list_reads_a_fixed_number_of_queries_however_many_models(
    client_as: Client, django_assert_max_num_queries: Callable
) -> None:
    client = client_as(Role.VIEWER)
    for n in range(20):
        version = ModelVersionFactory(model__tags=["llm"], number=2, kind=f"kind-{n % 3}")
        ModelVersionFactory(model=version.model, number=1)
        ModelAliasFactory(version=version, name="production")
    ScanRun.objects.create(state=ScanState.SUCCEEDED)

    with django_assert_max_num_queries(12):
        page = _page(client, reverse("models:list"))

    assert page.count("production → v2") == 20


# A model's page


def test_model_page_shows_versions_with_kind_vram_validation_and_creator(
    client_as: Client, operator: object
) -> None:
    version = ModelVersionFactory(
        model=RegisteredModelFactory(name="llama"),
        number=7,
        kind="causal-lm",
        estimated_vram_bytes=17_179_869_184,
        params_count=8_030_261_248,
        validation_state=ValidationState.VALID,
        created_by=operator,
    )
    ModelAliasFactory(version=version, name="staging")

    page = _page(client_as(Role.VIEWER), reverse("models:detail", args=[version.model_id]))

    assert "v7" in page
    assert "staging" in page
    assert "causal-lm" in page
    assert "16.0\xa0GiB" in page
    assert "8,030,261,248" in page
    assert "Valid" in page
    assert "operator" in page


def test_model_page_shows_lineage_across_models(client_as: Client) -> None:
    base = ModelVersionFactory(model=RegisteredModelFactory(name="base-lm"), number=3)
    adapter = ModelVersionFactory(model=RegisteredModelFactory(name="chat-lora"), number=1, parent=base)

    base_page = _page(client_as(Role.VIEWER), reverse("models:detail", args=[base.model_id]))
    adapter_page = _page(client_as(Role.VIEWER), reverse("models:detail", args=[adapter.model_id]))

    assert "Derived into" in base_page
    assert "chat-lora v1" in base_page
    assert "Derived from" in adapter_page
    assert "base-lm v3" in adapter_page


def test_model_page_of_an_unknown_model_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(reverse("models:detail", args=[999_999])).status_code == 404


def test_model_page_offers_operators_the_alias_form_clear_and_archive(client_as: Client) -> None:
    version = ModelVersionFactory()
    ModelAliasFactory(version=version, name="production")

    page = _page(client_as(Role.OPERATOR), reverse("models:detail", args=[version.model_id]))

    assert reverse("models:alias_set", args=[version.model_id]) in page
    assert reverse("models:alias_clear", args=[version.model_id, "production"]) in page
    assert reverse("models:archive", args=[version.model_id]) in page


def test_model_page_shows_viewers_no_buttons(client_as: Client) -> None:
    version = ModelVersionFactory()
    ModelAliasFactory(version=version, name="production")

    page = _page(client_as(Role.VIEWER), reverse("models:detail", args=[version.model_id]))

    assert "<button" not in page.split("</header>")[1]


def test_model_page_reads_a_fixed_number_of_queries_however_many_versions(
    client_as: Client, django_assert_max_num_queries: Callable
) -> None:
    client = client_as(Role.OPERATOR)
    model = RegisteredModelFactory()
    parent = ModelVersionFactory()
    for number in range(1, 16):
        ModelVersionFactory(model=model, number=number, parent=parent)

    with django_assert_max_num_queries(12):
        _page(client, reverse("models:detail", args=[model.pk]))


def test_operator_archives_a_model_and_restores_it(client_as: Client) -> None:
    client = client_as(Role.OPERATOR)
    model = RegisteredModelFactory(name="llama")

    response = client.post(reverse("models:archive", args=[model.pk]), follow=True)
    assert "llama is archived" in response.content.decode()
    assert RegisteredModel.objects.get(pk=model.pk).archived

    response = client.post(reverse("models:restore", args=[model.pk]), follow=True)
    assert "llama is restored" in response.content.decode()
    assert not RegisteredModel.objects.get(pk=model.pk).archived


def test_operator_sets_an_alias_and_moves_it_to_another_version(client_as: Client) -> None:
    client = client_as(Role.OPERATOR)
    model = RegisteredModelFactory(name="llama")
    one, two = ModelVersionFactory(model=model, number=1), ModelVersionFactory(model=model, number=2)
    url = reverse("models:alias_set", args=[model.pk])

    client.post(url, {"name": "production", "version": one.pk}, format="multipart")
    response = client.post(url, {"name": "production", "version": two.pk}, format="multipart", follow=True)

    assert "llama@production now points at v2" in response.content.decode()
    assert ModelAlias.objects.get(model=model, name="production").version == two


def test_setting_an_alias_with_a_bad_name_says_why_and_sets_nothing(client_as: Client) -> None:
    version = ModelVersionFactory()

    response = client_as(Role.OPERATOR).post(
        reverse("models:alias_set", args=[version.model_id]),
        {"name": "Not Valid!", "version": version.pk},
        format="multipart",
        follow=True,
    )

    assert "lower-case letters" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_setting_an_alias_to_another_models_version_is_refused(client_as: Client) -> None:
    model = RegisteredModelFactory()
    elsewhere = ModelVersionFactory()

    response = client_as(Role.OPERATOR).post(
        reverse("models:alias_set", args=[model.pk]),
        {"name": "production", "version": elsewhere.pk},
        follow=True,
    )

    assert "version" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_operator_clears_an_alias(client_as: Client) -> None:
    alias = ModelAliasFactory(name="staging")

    response = client_as(Role.OPERATOR).post(
        reverse("models:alias_clear", args=[alias.model_id, "staging"]), follow=True
    )

    assert "@staging is cleared" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_clearing_an_alias_that_is_not_set_says_so(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama")

    response = client_as(Role.OPERATOR).post(
        reverse("models:alias_clear", args=[model.pk, "canary"]), follow=True
    )

    assert "llama has no alias canary" in response.content.decode()


@pytest.mark.parametrize("action", ["archive", "restore", "alias_set", "alias_clear", "validate", "scan_now"])
def test_page_actions_are_refused_to_viewers(client_as: Client, action: str) -> None:
    alias = ModelAliasFactory(name="production")
    args = {
        "archive": [alias.model_id],
        "restore": [alias.model_id],
        "alias_set": [alias.model_id],
        "alias_clear": [alias.model_id, "production"],
        "validate": [alias.version_id],
        "scan_now": [],
    }[action]

    response = client_as(Role.VIEWER).post(
        reverse(f"models:{action}", args=args),
        {"name": "production", "version": alias.version_id},
        format="multipart",
    )

    assert response.status_code == 403
    assert ModelAlias.objects.filter(name="production").exists()
    assert not RegisteredModel.objects.filter(archived=True).exists()
    assert not ScanRun.objects.exists()


def test_page_actions_answer_only_posts(client_as: Client) -> None:
    model = RegisteredModelFactory()

    assert client_as(Role.OPERATOR).get(reverse("models:archive", args=[model.pk])).status_code == 405


# A version's page


def test_version_page_shows_files_metadata_and_why_it_is_invalid(client_as: Client) -> None:
    version = ModelVersionFactory(
        validation_state=ValidationState.INVALID,
        validation_error="tensor offsets overlap",
        metadata={"architecture": "LlamaForCausalLM", "dtypes": {"BF16": 291}},
    )
    ModelFileFactory(version=version, path="model-00001-of-00002.safetensors")

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    assert "model-00001-of-00002.safetensors" in page
    assert "LlamaForCausalLM" in page
    assert "BF16 291" in page
    assert "Can't be loaded or deployed" in page
    assert "tensor offsets overlap" in page


def test_version_page_shows_one_report_line_per_check(client_as: Client) -> None:
    version = ModelVersionFactory(validation_report=REPORT)

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    for line in REPORT:
        assert line["check"] in page
        assert line["detail"] in page
    assert '<span class="badge bad">fail</span>' in page
    assert '<span class="badge warn">warn</span>' in page
    assert '<span class="badge ok">pass</span>' in page


def test_invalid_version_without_a_recorded_verdict_refuses_with_the_reports_fail_lines(
    client_as: Client,
) -> None:
    version = ModelVersionFactory(validation_state=ValidationState.INVALID, validation_report=REPORT)

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    assert "<li>offsets_contiguous: tensor b overlaps tensor a</li>" in page


def test_valid_version_page_refuses_nothing(client_as: Client) -> None:
    version = ModelVersionFactory(validation_state=ValidationState.VALID, validation_report=REPORT[:1])

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    assert "Can't be loaded" not in page


def test_version_page_shows_the_vram_estimate_with_its_parts(client_as: Client) -> None:
    version = ModelVersionFactory(vram_estimate=VRAM, estimated_vram_bytes=VRAM["total"])

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    assert "953.7\xa0MiB" in page  # weights
    assert "512.0\xa0MiB" in page  # overhead
    assert "256.0\xa0MiB" in page  # KV cache
    assert "1.7\xa0GiB" in page  # total
    assert "at context 4,096 × batch 2" in page


def test_version_page_lists_architecture_facts_under_whichever_name_the_format_uses(
    client_as: Client,
) -> None:
    gguf = {"architecture": "llama", "context_length": 8192, "block_count": 32, "quantization": "Q4_K_M"}
    hf = {"model_type": "gpt2", "num_hidden_layers": 2, "hidden_size": 64}
    gguf_page = _page(
        client_as(Role.VIEWER), reverse("models:version", args=[ModelVersionFactory(metadata=gguf).pk])
    )
    hf_page = _page(
        client_as(Role.VIEWER), reverse("models:version", args=[ModelVersionFactory(metadata=hf).pk])
    )

    assert "<dt>Architecture</dt><dd>llama</dd>" in gguf_page
    assert "<dt>Context length</dt><dd>8192</dd>" in gguf_page
    assert "<dt>Layers</dt><dd>32</dd>" in gguf_page
    assert "<dt>Quantisation</dt><dd>Q4_K_M</dd>" in gguf_page
    assert "<dt>Architecture</dt><dd>gpt2</dd>" in hf_page
    assert "<dt>Hidden size</dt><dd>64</dd>" in hf_page


def test_version_page_lists_an_onnx_graphs_opset_inputs_and_outputs(client_as: Client) -> None:
    metadata = {
        "opsets": {"": 17},
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", None]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": None}],
    }
    version = ModelVersionFactory(format=ModelFormat.ONNX, metadata=metadata)

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    assert "<dt>Opset</dt><dd>17</dd>" in page
    assert "<dt>Inputs</dt><dd>input_ids: int64[batch, ?]</dd>" in page
    assert "<dt>Outputs</dt><dd>logits: float32</dd>" in page


def test_version_page_says_not_yet_for_a_file_without_a_checksum(client_as: Client) -> None:
    version = ModelVersionFactory()
    ModelFileFactory(version=version, sha256="")
    ModelFileFactory(version=version, sha256="ab" * 32)

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    assert "not yet" in page
    assert "abababababababab…" in page


def test_version_page_offers_validate_again_to_operators_only(client_as: Client) -> None:
    version = ModelVersionFactory()
    url = reverse("models:validate", args=[version.pk])

    assert url in _page(client_as(Role.OPERATOR), reverse("models:version", args=[version.pk]))
    assert url not in _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))


def test_validate_again_queues_a_validation_and_says_so(
    client_as: Client, django_capture_on_commit_callbacks: Callable
) -> None:
    version = ModelVersionFactory(validation_state=ValidationState.INVALID)

    client = client_as(Role.OPERATOR)  # made first: a new person's roles announce a change of their own

    with django_capture_on_commit_callbacks() as queued:
        response = client.post(reverse("models:validate", args=[version.pk]), follow=True)

    assert len(queued) == 1
    assert "queued for validation" in response.content.decode()


def test_validate_again_from_the_page_waits_in_place_for_the_new_report(
    client_as: Client, django_capture_on_commit_callbacks: Callable
) -> None:
    version = ModelVersionFactory(validation_state=ValidationState.INVALID, validated_at=timezone.now())
    url = reverse("models:validate", args=[version.pk])
    client = client_as(Role.OPERATOR)
    page = _page(client, reverse("models:version", args=[version.pk]))
    assert f'hx-post="{url}" hx-target="#validation-live"' in page

    with django_capture_on_commit_callbacks() as queued:
        response = client.post(url, headers={"HX-Request": "true"})

    part = response.content.decode()
    assert len(queued) == 1
    assert "<html" not in part
    assert part.count('<section id="validation-live"') == 1
    poll = re.search(r'hx-get="([^"]*\?after=[\d.]+)" hx-trigger="every \d+s"', part)
    assert poll, "the report does not ask again"
    assert "Queued for validation" in part


def test_the_validation_poll_shows_the_new_report_and_verdict_then_stops(client_as: Client) -> None:
    asked = timezone.now()
    version = ModelVersionFactory(
        validation_state=ValidationState.VALID,
        validated_at=asked + timedelta(seconds=2),
        validation_report=[{"check": "header_size", "status": "pass", "detail": "fine", "file": ""}],
    )

    response = client_as(Role.VIEWER).get(
        reverse("models:version", args=[version.pk]),
        {"after": f"{asked.timestamp():.3f}"},
        headers={"HX-Request": "true"},
    )

    part = response.content.decode()
    assert "header_size" in part
    assert "hx-trigger" not in part  # it stops asking
    # The verdict at the top of the page follows, swapped in by id.
    assert '<span id="validation-badge" class="badge ok" hx-swap-oob="true">Valid</span>' in part
    assert 'id="validation-problems" hx-swap-oob="true"' in part
    assert 'id="validation-state" hx-swap-oob="true"' in part


def test_the_validation_poll_keeps_asking_while_only_an_older_report_exists(client_as: Client) -> None:
    version = ModelVersionFactory(validated_at=timezone.now() - timedelta(minutes=1))

    response = client_as(Role.VIEWER).get(
        reverse("models:version", args=[version.pk]),
        {"after": f"{timezone.now().timestamp():.3f}"},
        headers={"HX-Request": "true"},
    )

    assert 'hx-trigger="every 2s"' in response.content.decode()


def test_the_validation_poll_gives_up_after_a_while_and_says_so(client_as: Client) -> None:
    version = ModelVersionFactory()

    response = client_as(Role.VIEWER).get(
        reverse("models:version", args=[version.pk]),
        {"after": f"{(timezone.now() - timedelta(hours=1)).timestamp():.3f}"},
        headers={"HX-Request": "true"},
    )

    part = response.content.decode()
    assert "hx-trigger" not in part
    assert "stopped waiting" in part


def test_version_page_ignores_an_after_that_is_not_a_time(client_as: Client) -> None:
    version = ModelVersionFactory()

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]), {"after": "nan"})

    assert "<html" in page


def test_version_page_shows_an_adapters_base_as_derived_from(client_as: Client) -> None:
    base = ModelVersionFactory(model=RegisteredModelFactory(name="demo-lm"), number=1)
    adapter = ModelVersionFactory(
        model=RegisteredModelFactory(name="demo-lora"), number=1, kind="adapter", parent=base
    )

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[adapter.pk]))

    assert f'<dt>Derived from</dt><dd><a href="{base.get_absolute_url()}">demo-lm v1</a></dd>' in page


def test_version_page_shows_control_characters_in_names_from_disk_escaped(client_as: Client) -> None:
    version = ModelVersionFactory(
        path="/srv/models/evil\nname",
        validation_report=[
            {"check": "header_size", "status": "fail", "detail": "bad\x1b[31m", "file": "a\nb.bin"}
        ],
    )
    ModelFileFactory(version=version, path="w\neights.safetensors")

    page = _page(client_as(Role.VIEWER), reverse("models:version", args=[version.pk]))

    assert "/srv/models/evil\\nname" in page
    assert "w\\neights.safetensors" in page
    assert "a\\nb.bin" in page
    assert "bad\\x1b[31m" in page
    assert "\x1b" not in page


def test_scan_page_shows_control_characters_in_failed_paths_escaped(client_as: Client) -> None:
    scan = ScanRun.objects.create(
        state=ScanState.SUCCEEDED, failed=1, errors=[{"path": "/srv/m/a\nb.gguf", "error": "bad \x07 file"}]
    )

    page = _page(client_as(Role.VIEWER), reverse("models:scan", args=[scan.pk]))

    assert "/srv/m/a\\nb.gguf" in page
    assert "bad \\x07 file" in page


def test_list_filters_say_any_where_nothing_is_chosen(client_as: Client) -> None:
    page = _page(client_as(Role.VIEWER), reverse("models:list"))

    form = page.split('<form method="get" class="filters">', 1)[1].split("</form>", 1)[0]
    assert '<option value="" selected>Any</option>' in form
    assert '<option value="unknown" selected>Any</option>' in form  # archived: yes, no or any
    assert "Unknown" not in form
    assert "---------" not in form


def test_an_operator_archives_a_version_from_its_page_and_restores_it(client_as: Client) -> None:
    version = ModelVersionFactory()
    client = client_as(Role.OPERATOR)

    archived = client.post(reverse("models:version_archive", args=[version.pk]), follow=True)
    archived_flag = ModelVersion.objects.get(pk=version.pk).archived
    restored = client.post(reverse("models:version_restore", args=[version.pk]), follow=True)

    assert archived_flag is True
    assert "is archived" in archived.content.decode()
    assert "is restored" in restored.content.decode()
    assert ModelVersion.objects.get(pk=version.pk).archived is False


def test_archiving_a_version_an_alias_points_at_is_refused_with_the_reason(client_as: Client) -> None:
    alias = ModelAliasFactory(name="staging")

    response = client_as(Role.OPERATOR).post(
        reverse("models:version_archive", args=[alias.version.pk]), follow=True
    )

    assert "staging" in response.content.decode()
    assert ModelVersion.objects.get(pk=alias.version.pk).archived is False


def test_a_viewer_cannot_archive_a_version(client_as: Client) -> None:
    version = ModelVersionFactory()

    response = client_as(Role.VIEWER).post(reverse("models:version_archive", args=[version.pk]))

    assert response.status_code == 403


def test_version_page_reads_a_fixed_number_of_queries_however_many_files(
    client_as: Client, django_assert_max_num_queries: Callable
) -> None:
    client = client_as(Role.OPERATOR)
    version = ModelVersionFactory(parent=ModelVersionFactory(), validation_report=REPORT)
    for _ in range(15):
        ModelFileFactory(version=version)
    ModelAliasFactory(version=version)

    # 12 with the move form: whether the version is its model's only one, and the models it may join.
    with django_assert_max_num_queries(12):
        _page(client, reverse("models:version", args=[version.pk]))


# Scans


def test_scan_page_shows_state_progress_counts_and_errors(client_as: Client) -> None:
    scan = ScanRun.objects.create(
        state=ScanState.SUCCEEDED,
        progress=1.0,
        files_seen=12,
        new=3,
        changed=2,
        unchanged=5,
        removed=1,
        failed=1,
        errors=[{"path": "/srv/models/bad.gguf", "error": "tensor count 9e18 over the cap"}],
    )

    page = _page(client_as(Role.VIEWER), reverse("models:scan", args=[scan.pk]))

    assert "Succeeded" in page
    assert "100%" in page
    for label, value in [("New", 3), ("Changed", 2), ("Unchanged", 5), ("Removed", 1), ("Failed", 1)]:
        assert f'{label}</span><span class="stat-value' in page
        assert f">{value}</span>" in page
    assert "tensor count 9e18 over the cap" in page
    assert "hx-trigger" not in page


def test_scan_page_polls_while_the_scan_is_active(client_as: Client) -> None:
    scan = ScanRun.objects.create(state=ScanState.RUNNING, progress=0.25, files_seen=8)

    page = _page(client_as(Role.VIEWER), reverse("models:scan", args=[scan.pk]))

    assert 'hx-trigger="every 2s"' in page
    assert "25%" in page


def test_scan_page_answers_htmx_with_its_live_part_only(client_as: Client) -> None:
    scan = ScanRun.objects.create(state=ScanState.RUNNING)

    response = client_as(Role.VIEWER).get(reverse("models:scan", args=[scan.pk]), HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert page.lstrip().startswith('<div id="scan-live"')
    assert "<html" not in page


def test_scans_list_shows_each_scans_counts(client_as: Client) -> None:
    ScanRun.objects.create(state=ScanState.FAILED, new=4, failed=2)

    page = _page(client_as(Role.VIEWER), reverse("models:scans"))

    assert "Failed" in page
    assert ">4</td>" in page


def test_scans_list_reads_a_fixed_number_of_queries_however_many_scans(
    client_as: Client, operator: object, django_assert_max_num_queries: Callable
) -> None:
    client = client_as(Role.VIEWER)
    for _ in range(20):
        ScanRun.objects.create(state=ScanState.SUCCEEDED, requested_by=operator)

    with django_assert_max_num_queries(10):
        _page(client, reverse("models:scans"))


def test_scan_now_queues_a_scan_and_opens_its_page(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(reverse("models:scan_now"))

    scan = ScanRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == scan.get_absolute_url()
    assert scan.state == ScanState.QUEUED


def test_scan_now_while_a_scan_is_active_opens_that_scan_and_says_why(client_as: Client) -> None:
    active = ScanRun.objects.create(state=ScanState.RUNNING)

    response = client_as(Role.OPERATOR).post(reverse("models:scan_now"), follow=True)

    assert response.redirect_chain[-1][0] == active.get_absolute_url()
    assert ScanRun.objects.count() == 1
    assert 'class="msg error"' in response.content.decode()
