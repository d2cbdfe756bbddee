"""Stored samples as snapshots for a rule's preview: telemetry rows labelled as their live series,
serving minutes as the live per-release figures, bounded work, and no history where MOC keeps none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.alerts import history, sources
from apps.deployments.models import ServingMinute
from apps.fleet.domain.kinds import Resolution
from apps.fleet.models import TelemetrySample
from tests.deployments.test_metrics import live
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.fleet.test_metrics import send, sim_gpu
from tests.procs import RedisServer

pytestmark = pytest.mark.django_db
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def sim_device() -> Any:
    """The device sim_gpu(0) describes, as registration stored it."""
    node = NodeFactory(name="gpu-box-1")
    return DeviceFactory(
        node=node,
        index=0,
        uuid="SIM-5c1e-0",
        name="Simulated GPU 24 GiB",
        simulated=True,
        memory_total_bytes=24 * GIB,
    )


def test_telemetry_rows_are_labelled_exactly_as_the_live_series(redis_server: RedisServer) -> None:
    device = sim_device()
    TelemetrySample.objects.create(device=device, at=START + timedelta(seconds=5), temperature_c=70.0)
    send(redis_server, [sim_gpu(0)])

    snaps = history.snapshots("DCGM_FI_DEV_GPU_TEMP", since=START, until=START + timedelta(minutes=10))

    assert snaps is not None
    (at, (sample,)) = snaps[0]
    assert at == START
    assert sample.value == 70.0
    (live_sample,) = sources.current(["DCGM_FI_DEV_GPU_TEMP"])["DCGM_FI_DEV_GPU_TEMP"]
    assert sample.labels == live_sample.labels


def test_rows_are_bucketed_and_held_while_fresh_then_gone() -> None:
    device = sim_device()
    for seconds, used in [(0, 6), (10, 12), (20, 12), (130, 6)]:  # GiB
        TelemetrySample.objects.create(
            device=device, at=START + timedelta(seconds=seconds), mem_used_bytes=used * GIB
        )
    # A rollup row without the figure gives no sample.
    TelemetrySample.objects.create(
        device=device, at=START + timedelta(seconds=290), resolution_s=Resolution.MINUTE, gpu_util=10.0
    )

    snaps = history.snapshots("moc_device_memory_used_ratio", since=START, until=START + timedelta(minutes=5))

    assert snaps is not None
    values = {int((at - START).total_seconds()): [s.value for s in samples] for at, samples in snaps}
    assert snaps[1][0] - snaps[0][0] == timedelta(seconds=10)  # five minutes: the stored rows' 10 s
    assert values[0] == [pytest.approx(6 / 24)]
    assert values[20] == [pytest.approx(12 / 24)]
    # Nothing from 30 s to 130 s: the last value is held a minute, as a fresh series on /metrics, then gone.
    assert values[80] == [pytest.approx(12 / 24)]
    assert values[90] == values[120] == []
    assert values[130] == [pytest.approx(6 / 24)]
    assert values[290] == []  # the rollup row there has no memory figure, and 130 s is too old


def test_a_range_of_a_week_is_bounded_in_snapshots_and_queries(django_assert_max_num_queries: Any) -> None:
    device = sim_device()
    TelemetrySample.objects.bulk_create(
        TelemetrySample(device=device, at=START + timedelta(minutes=m), gpu_util=float(m % 100))
        for m in range(0, 7 * 24 * 60, 7)
    )

    with django_assert_max_num_queries(2):  # the samples, and their devices
        snaps = history.snapshots("DCGM_FI_DEV_GPU_UTIL", since=START, until=START + timedelta(days=7))

    assert snaps is not None
    assert 100 < len(snaps) <= history.MAX_SNAPSHOTS


def test_serving_minutes_give_each_release_its_figures_as_live() -> None:
    deployment, stable, _ = live()
    common = {"deployment": deployment, "release": stable, "version": stable.model_version}
    ServingMinute.objects.create(
        minute=START, ok=90, errors=30, latency_p99_ms=450.0, ttft_p99_ms=40.0, **common
    )
    # Only refused requests in this minute: no figure, as a release with no request has no sample live.
    ServingMinute.objects.create(minute=START + timedelta(minutes=1), refused=5, requests=5, **common)

    until = START + timedelta(minutes=3)
    error_rate = history.snapshots("moc_deployment_error_rate", since=START, until=until)
    rps = history.snapshots("moc_deployment_requests_per_second", since=START, until=until)
    p99 = history.snapshots("moc_deployment_latency_p99_ms", since=START, until=until)

    assert error_rate is not None
    assert rps is not None
    assert p99 is not None
    labels = {"deployment": "chat", "release": str(stable.pk), "version": str(stable.model_version.number)}
    assert [(at, [(s.labels, s.value) for s in samples]) for at, samples in error_rate] == [
        (START, [(labels, 0.25)]),
        (START + timedelta(minutes=1), []),
        (START + timedelta(minutes=2), []),
    ]
    assert rps[0][1][0].value == 2.0
    assert p99[0][1][0].value == 450.0


def test_a_metric_moc_keeps_no_history_of_has_none() -> None:
    assert history.snapshots("moc_device_health", since=START, until=START + timedelta(hours=1)) is None
    assert history.snapshots("moc_jobs_waiting", since=START, until=START + timedelta(hours=1)) is None
