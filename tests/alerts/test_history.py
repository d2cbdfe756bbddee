"""Stored samples as snapshots for a rule's preview: telemetry rows labelled as their live series,
serving minutes as the live per-release figures, bounded work, and no history where MOC keeps none."""

from __future__ import annotations

from collections import defaultdict
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


@pytest.mark.parametrize(
    ("span", "every_s", "bucket_s"),
    [(timedelta(hours=6), 7, 30), (timedelta(days=1), 29, 60), (timedelta(days=7), 197, 600)],
)
def test_the_database_averages_each_bucket_as_the_readings_mean(
    span: timedelta, every_s: int, bucket_s: int
) -> None:
    """Readings at odd times (fractions of a second, across bucket edges) of two devices: each
    snapshot holds each device's plain mean of the readings in its bucket (the bucket starting at a
    whole multiple of its size since the epoch), and the database hands over one row per device and
    bucket, not the readings."""
    node = NodeFactory(name="gpu-box-2")
    devices = [DeviceFactory(node=node, index=i, uuid=f"SIM-hist-{i}") for i in range(2)]
    since = START + timedelta(seconds=3.5)  # not on a bucket edge: the first bucket starts before it
    until = since + span
    readings = [
        (device, since + timedelta(seconds=n * every_s + 0.25 * (n % 4)), 40.0 + (n * 7 + i * 13) % 50)
        for i, device in enumerate(devices)
        for n in range(int(span.total_seconds() // every_s))
    ]
    TelemetrySample.objects.bulk_create(
        TelemetrySample(device=device, at=at, temperature_c=value) for device, at, value in readings
    )
    sums: dict[tuple[str, datetime], list[float]] = defaultdict(list)
    for device, at, value in readings:
        start = datetime.fromtimestamp(int(at.timestamp()) // bucket_s * bucket_s, tz=UTC)
        sums[(device.uuid, start)].append(value)
    expected = {key: sum(values) / len(values) for key, values in sums.items()}

    snaps = history.snapshots("DCGM_FI_DEV_GPU_TEMP", since=since, until=until)

    assert snaps is not None
    assert snaps[1][0] - snaps[0][0] == timedelta(seconds=bucket_s)
    got = {(s.labels["uuid"], at): s.value for at, samples in snaps for s in samples}
    assert {key: got.get(key) for key in expected} == pytest.approx(expected)
    # The only other samples are a last mean held over an empty bucket (the one `until` cuts short).
    step = timedelta(seconds=bucket_s)
    held = {(uuid, at): got[(uuid, at - step)] for uuid, at in set(got) - set(expected)}
    assert {key: got[key] for key in held} == held
    assert len(held) <= len(devices)
    assert {dict(s.labels)["node"] for _, samples in snaps for s in samples} == {"gpu-box-2"}
    fetched = history._telemetry_rows("DCGM_FI_DEV_GPU_TEMP", since, until, bucket_s)
    assert sum(len(points) for points in fetched.values()) <= len(snaps) * len(devices)


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
