"""The metric catalogue: every metric is a real series on /metrics with the catalogue's labels, and
a rule naming a metric, event or label that is not there is refused, naming the field."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts.domain.catalog import CATALOG, GROUPS, rule_errors
from apps.alerts.domain.matchers import Matcher
from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.figures import Outcome
from apps.jobs.domain.states import JobState
from apps.serving.domain.states import PlacementState
from tests.deployments.test_metrics import live
from tests.fleet.factories import NodeFactory
from tests.fleet.test_metrics import samples, send, sim_gpu
from tests.jobs.factories import JobFactory
from tests.procs import RedisServer
from tests.serving.factories import PlacementFactory

UNITS = {"°C", "%", "W", "ratio", "s", "ms", "req/s", "count", "state"}


@pytest.mark.django_db
def test_every_catalogue_metric_is_on_a_real_scrape_with_the_catalogue_labels(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0)])  # a simulated node's telemetry, as its agent publishes it
    NodeFactory(name="gpu-box-1", last_heartbeat_at=timezone.now() - timedelta(seconds=3))
    _, stable, _ = live()
    figures.record(
        redis_client(),
        release_id=stable.pk,
        outcome=Outcome.OK,
        latency_ms=20,
        ttft_ms=4,
        at=time.time() - 15,
    )
    PlacementFactory(state=PlacementState.LOADED)
    JobFactory(state=JobState.QUEUED)

    text = scrape()

    for name, spec in CATALOG.items():
        found = samples(text, name)
        assert found, f"{name} is not on /metrics"
        assert {tuple(sorted(s.labels)) for s in found} == {tuple(sorted(spec.labels))}, name


def test_each_metric_says_what_it_measures() -> None:
    for spec in CATALOG.values():
        assert spec.unit in UNITS, spec.name
        assert spec.group in GROUPS, spec.name
        assert spec.help, spec.name
    assert CATALOG["DCGM_FI_DEV_GPU_TEMP"].unit == "°C"
    assert CATALOG["moc_device_health"].history is False
    assert CATALOG["moc_deployment_error_rate"].history is True


def errors(**rule: object) -> dict[str, list[str]]:
    fields: dict[str, object] = {
        "kind": "threshold",
        "metric": "",
        "event": "",
        "threshold": 80.0,
        "matchers": [],
    }
    return rule_errors(**{**fields, **rule})  # type: ignore[arg-type]


def test_a_valid_threshold_rule_has_no_error() -> None:
    matchers = [{"label": "node", "op": "=", "value": "gpu-box-1"}, Matcher("severity", "=", "critical")]
    assert errors(metric="DCGM_FI_DEV_GPU_TEMP", matchers=matchers) == {}


def test_an_unknown_metric_names_the_closest_real_ones() -> None:
    assert errors(metric="gpu_temp") == {
        "metric": ["unknown metric 'gpu_temp'; did you mean DCGM_FI_DEV_GPU_TEMP?"]
    }
    (message,) = errors(metric="gpu_utilisation")["metric"]
    assert "DCGM_FI_DEV_GPU_UTIL" in message


def test_a_matcher_on_a_label_the_metric_lacks_names_the_metric_labels() -> None:
    found = errors(metric="DCGM_FI_DEV_GPU_TEMP", matchers=[{"label": "nod", "op": "=", "value": "a"}])

    assert found == {
        "matchers": [
            "label 'nod' is not a label of DCGM_FI_DEV_GPU_TEMP "
            "(node, gpu, device, uuid, model_name, simulated, alertname, severity)"
        ]
    }
    assert errors(metric="moc_placement_breaker_state", matchers=[Matcher("state", "=", "open")]) == {}


def test_a_threshold_rule_needs_its_metric_and_threshold_and_no_event() -> None:
    assert errors(metric="", threshold=None, event="job_failed") == {
        "metric": ["is required for threshold rules"],
        "threshold": ["is required for threshold rules"],
        "event": ["must be empty for threshold rules (they watch a metric)"],
    }


def test_an_event_rule_needs_a_known_event_and_its_labels() -> None:
    assert (
        errors(kind="event", event="job_failed", threshold=None, matchers=[Matcher("queue", "=", "q")]) == {}
    )
    assert errors(kind="event", event="job_fail")["event"] == [
        "unknown event 'job_fail'; did you mean job_failed?"
    ]
    assert errors(kind="event", event="")["event"][0].startswith("is required for event rules")
    assert errors(kind="event", event="node_lost", metric="DCGM_FI_DEV_GPU_TEMP") == {
        "metric": ["must be empty for event rules (they watch an event)"]
    }
    assert errors(kind="event", event="node_lost", matchers=[Matcher("device", "=", "gpu0")]) == {
        "matchers": ["label 'device' is not a label of event node_lost (node, event, alertname, severity)"]
    }


def test_an_unknown_kind_is_refused() -> None:
    assert errors(kind="sometimes") == {"kind": ["must be one of threshold, event"]}
