"""Stored samples of a catalogue metric as a time series of snapshots, for a rule's preview.

MOC stores device temperature, utilisation, power and memory in use (fleet TelemetrySample, raw
readings and one-minute rollups) and each release's serving minute (deployments ServingMinute).
Rows are averaged into buckets sized so a range gives at most about MAX_SNAPSHOTS snapshot times
(the fleet history's bucket sizes), one query per table, and each series is labelled exactly as
its live series on /metrics is, so a rule's matchers select the same series in both. Telemetry
is averaged by the database (a day of raw readings is 8,640 rows a device): the web process gets
one row per device and bucket.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Avg, Func, Value
from django.db.models.functions import ExtractHour, ExtractMinute, ExtractSecond, Floor, Trunc

from apps.alerts.domain.evaluation import Sample
from apps.deployments.models import ServingMinute
from apps.fleet.domain.history import bucket_for, downsample
from apps.fleet.metrics import device_labels, stale_after_s
from apps.fleet.models import Device, TelemetrySample

MAX_SNAPSHOTS = 2000
MINUTE_S = 60

Snapshots = list[tuple[datetime, list[Sample]]]
# A series' label set (sorted pairs) -> its rows as (at, value).
Rows = dict[tuple[tuple[str, str], ...], list[tuple[datetime, float]]]


@dataclass(frozen=True, slots=True)
class _ServingFigure:
    columns: tuple[str, ...]  # besides ok and errors
    value: Callable[..., float | None]  # (ok, errors, *columns) -> the figure, None where unmeasured


# The telemetry column of each device metric; the memory ratio divides by the device's memory.
_TELEMETRY = {
    "DCGM_FI_DEV_GPU_TEMP": "temperature_c",
    "DCGM_FI_DEV_GPU_UTIL": "gpu_util",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "moc_device_memory_used_ratio": "mem_used_bytes",
}
# As apps.deployments.metrics.window_families computes them live, from the minute's columns.
_SERVING = {
    "moc_deployment_latency_p99_ms": _ServingFigure(("latency_p99_ms",), lambda ok, errors, ms: ms),
    "moc_deployment_ttft_p99_ms": _ServingFigure(("ttft_p99_ms",), lambda ok, errors, ms: ms),
    "moc_deployment_error_rate": _ServingFigure((), lambda ok, errors: errors / (ok + errors)),
    "moc_deployment_requests_per_second": _ServingFigure((), lambda ok, errors: (ok + errors) / MINUTE_S),
}


def stored(metric: str) -> bool:
    return metric in _TELEMETRY or metric in _SERVING


def snapshots(metric: str, *, since: datetime, until: datetime) -> Snapshots | None:
    """The metric's stored series from `since` to `until` as (time, samples) in time order, one
    per bucket (a bucket where a series has no row lacks its sample, as /metrics would); None when
    MOC keeps no history of the metric."""
    if metric in _TELEMETRY:
        finest_s = settings.MOC_TELEMETRY_STORE_S
        bucket_s = bucket_for(until - since, finest_s=finest_s, max_points=MAX_SNAPSHOTS)
        # A device's series stays on /metrics while its latest reading is fresh (stale_after_s);
        # a rollup row stands for its whole minute.
        hold_s = max(stale_after_s(), MINUTE_S, finest_s)
        return _assemble(_telemetry_rows(metric, since, until, bucket_s), since, until, bucket_s, hold_s)
    if metric in _SERVING:
        bucket_s = bucket_for(until - since, finest_s=MINUTE_S, max_points=MAX_SNAPSHOTS)
        # A minute without a request has no row and the live figure no sample: nothing is held over.
        series = {
            key: downsample(rows, metrics=["value"], bucket_s=bucket_s)["value"]
            for key, rows in _serving_rows(metric, since, until).items()
        }
        return _assemble(series, since, until, bucket_s, hold_s=0)
    return None


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


# To bucket a time in SQL: the unit it is truncated to, and the part below it counted in buckets.
# Each bucket size divides its unit and the unit a day, so the buckets start where downsample's
# (whole multiples of the size since the epoch) do.
_UNITS: tuple[tuple[int, str, type[Func], int], ...] = (
    (60, "minute", ExtractSecond, 1),
    (3600, "hour", ExtractMinute, 60),
    (86400, "day", ExtractHour, 3600),
)


def _bucketed(bucket_s: int) -> dict[str, Func]:
    """The expressions that place a row's `at` in its bucket: the UTC unit it falls in (`unit`) and
    which bucket of that unit (`slot`); the bucket starts at unit + slot * bucket_s."""
    for unit_s, kind, extract, part_s in _UNITS:
        if bucket_s <= unit_s:
            if unit_s % bucket_s or bucket_s % part_s:
                break
            return {
                "unit": Trunc("at", kind, tzinfo=UTC),
                "slot": Floor(extract("at", tzinfo=UTC) / Value(bucket_s // part_s)),
            }
    raise ValueError(f"no SQL bucketing for {bucket_s} s buckets")


def _telemetry_rows(metric: str, since: datetime, until: datetime, bucket_s: int) -> Rows:
    """Each device's mean of the metric's column per bucket (bucket start, mean), averaged in SQL."""
    column = _TELEMETRY[metric]
    rows = (
        TelemetrySample.objects.filter(at__gte=since, at__lt=until, **{f"{column}__isnull": False})
        .annotate(**_bucketed(bucket_s))
        .values("device_id", "unit", "slot")
        .annotate(mean=Avg(column))
        .order_by("device_id", "unit", "slot")
        .values_list("device_id", "unit", "slot", "mean")
    )
    by_device: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    for device_id, unit, slot, mean in rows.iterator(chunk_size=5000):
        by_device[device_id].append((unit + timedelta(seconds=int(slot) * bucket_s), float(mean)))
    out: Rows = {}
    for device in Device.objects.filter(pk__in=by_device).select_related("node"):
        points = by_device[device.pk]
        if column == "mem_used_bytes":
            if not device.memory_total_bytes:
                continue
            points = [(at, used / device.memory_total_bytes) for at, used in points]
        labels = device_labels(
            device.node.name,
            {
                "index": device.index,
                "kind": device.kind,
                "uuid": device.uuid,
                "name": device.name,
                "simulated": device.simulated,
            },
        )
        out[_key(labels)] = points
    return out


def _serving_rows(metric: str, since: datetime, until: datetime) -> Rows:
    figure = _SERVING[metric]
    rows = (
        ServingMinute.objects.filter(minute__gte=since, minute__lt=until)
        .order_by("release_id", "minute")
        .values_list(
            "deployment__name", "release_id", "version__number", "minute", "ok", "errors", *figure.columns
        )
    )
    out: Rows = defaultdict(list)
    for deployment, release, version, minute, ok, errors, *columns in rows.iterator(chunk_size=5000):
        if not ok + errors:  # no request answered or failed: no figure, as live
            continue
        value = figure.value(ok, errors, *columns)
        if value is not None:
            labels = {"deployment": deployment, "release": str(release), "version": str(version)}
            out[_key(labels)].append((minute, float(value)))
    return out


def _assemble(series: Rows, since: datetime, until: datetime, bucket_s: int, hold_s: float) -> Snapshots:
    """One snapshot per bucket start from `since` to `until`: each series' mean over the bucket
    (`series` holds them by bucket start, in time order), or its last bucket's mean while that is
    at most `hold_s` older."""
    first = since - timedelta(seconds=int(since.timestamp()) % bucket_s, microseconds=since.microsecond)
    times = _grid(first, until, bucket_s)
    snaps: dict[datetime, list[Sample]] = {t: [] for t in times}
    for key, points in series.items():
        labels = dict(key)
        for t, value in _held(points, times, hold_s):
            snaps[t].append(Sample(labels=labels, value=value))
    return [(t, snaps[t]) for t in times]


def _grid(first: datetime, until: datetime, bucket_s: int) -> list[datetime]:
    times, t = [], first
    while t < until:
        times.append(t)
        t += timedelta(seconds=bucket_s)
    return times


def _held(
    points: Sequence[tuple[datetime, float]], times: Iterable[datetime], hold_s: float
) -> Iterable[tuple[datetime, float]]:
    """The series' value at each time: its point there, else its latest earlier one within hold_s."""
    i = 0
    latest: tuple[datetime, float] | None = None
    for t in times:
        while i < len(points) and points[i][0] <= t:
            latest, i = points[i], i + 1
        if latest is not None and (t - latest[0]).total_seconds() <= hold_s:
            yield t, latest[1]
