"""Live series for rules, read as /metrics reads them: a simulated device's telemetry in Redis,
jobs in the database, and nothing (not an error) with Redis away."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from apps.alerts import sources
from apps.alerts.domain.catalog import CATALOG
from apps.alerts.domain.evaluation import Sample
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from tests.fleet.test_metrics import GPU0, send, sim_gpu
from tests.jobs.factories import JobFactory
from tests.procs import RedisServer


def test_every_catalogue_metric_has_a_source() -> None:
    assert set(sources.SOURCE_OF) == set(CATALOG)


def test_a_simulated_device_series_is_read_from_its_telemetry_with_its_metrics_labels(
    redis_server: RedisServer,
) -> None:
    send(redis_server, [sim_gpu(0, temperature_c=88.5), sim_gpu(1, health="degraded")])

    # Only the sources asked for are read: the test has no database, and any query would fail it.
    found = sources.current(["DCGM_FI_DEV_GPU_TEMP", "moc_device_health", "moc_device_memory_used_ratio"])

    assert found["DCGM_FI_DEV_GPU_TEMP"][0] == Sample(labels=GPU0, value=88.5)
    assert [s.labels["device"] for s in found["DCGM_FI_DEV_GPU_TEMP"]] == ["gpu0", "gpu1"]
    degraded = [s for s in found["moc_device_health"] if s.value == 1.0 and s.labels["device"] == "gpu1"]
    assert [s.labels["health"] for s in degraded] == ["degraded"]
    assert found["moc_device_memory_used_ratio"][0].value == pytest.approx(5368709120 / 25769803776)


def test_a_metric_outside_the_catalogue_has_no_series(redis_server: RedisServer) -> None:
    send(redis_server, [sim_gpu(0)])

    assert sources.current(["DCGM_FI_DEV_FAN_SPEED", "nonsense"]) == {
        "DCGM_FI_DEV_FAN_SPEED": [],
        "nonsense": [],
    }


@pytest.mark.django_db
def test_database_figures_are_read_too() -> None:
    JobFactory.create_batch(3, kind=JobKind.EVALUATE, queue="default", state=JobState.QUEUED)

    (sample,) = sources.current(["moc_jobs_waiting"])["moc_jobs_waiting"]

    assert sample == Sample(labels={"kind": "evaluate", "queue": "default"}, value=3.0)


def test_redis_away_gives_no_series_and_is_logged_once(
    settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    monkeypatch.setattr(sources, "_redis_down", False)

    with caplog.at_level(logging.WARNING, logger="apps.alerts.sources"):
        assert sources.current(["DCGM_FI_DEV_GPU_TEMP"]) == {"DCGM_FI_DEV_GPU_TEMP": []}
        assert sources.current(["DCGM_FI_DEV_GPU_TEMP"]) == {"DCGM_FI_DEV_GPU_TEMP": []}

    assert len([r for r in caplog.records if "Redis" in r.getMessage()]) == 1


def test_label_values_list_each_label_current_values(redis_server: RedisServer) -> None:
    send(redis_server, [sim_gpu(1), sim_gpu(0)])
    send(redis_server, [sim_gpu(0)], node="gpu-box-2")

    found = sources.label_values("DCGM_FI_DEV_GPU_UTIL")

    assert found["node"] == ["gpu-box-1", "gpu-box-2"]
    assert found["device"] == ["gpu0", "gpu1"]
    assert found["simulated"] == ["true"]
    assert set(found) == set(CATALOG["DCGM_FI_DEV_GPU_UTIL"].labels)
    assert sources.label_values("nonsense") == {}
