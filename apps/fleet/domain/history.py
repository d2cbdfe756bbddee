"""Telemetry over time, as plain values: averaging a sampling window into one stored row,
and choosing a bucket size so a chart of any range gets a readable number of points."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

# The figures stored for each device; the history API serves exactly these.
STORED_METRICS = ("gpu_util", "mem_util", "mem_used_bytes", "temperature_c", "power_w")
BUCKETS_S = (10, 30, 60, 300, 600, 1800, 3600, 6 * 3600)
MAX_POINTS = 600
RANGES_S = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


class _Mean:
    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1

    @property
    def value(self) -> float:
        return self.total / self.count


class SampleWindow:
    """Readings of each device since the last flush, averaged into one row per device."""

    def __init__(self) -> None:
        self._means: dict[int, dict[str, _Mean]] = defaultdict(lambda: defaultdict(_Mean))

    def add(self, device_id: int, figures: Mapping[str, float | int | None]) -> None:
        for metric in STORED_METRICS:
            value = figures.get(metric)
            if value is not None:
                self._means[device_id][metric].add(float(value))

    def flush(self) -> dict[int, dict[str, float | None]]:
        """Each device's mean per metric (None where no reading had it), and start afresh."""
        out = {
            device_id: {m: means[m].value if m in means else None for m in STORED_METRICS}
            for device_id, means in self._means.items()
        }
        self._means.clear()
        return out


def bucket_for(span: timedelta, *, finest_s: int, max_points: int = MAX_POINTS) -> int:
    """The smallest bucket that keeps `span` under `max_points`, and no finer than what is stored."""
    need = math.ceil(span.total_seconds() / max_points)
    for size in BUCKETS_S:
        if size >= need and size >= finest_s:
            return size
    return BUCKETS_S[-1]


def downsample(
    rows: Iterable[Sequence[object]], *, metrics: Sequence[str], bucket_s: int
) -> dict[str, list[tuple[datetime, float]]]:
    """Average rows of (at, *values in `metrics` order) into buckets; a bucket with no value
    for a metric has no point (a gap in the chart, never a made-up zero)."""
    buckets: dict[str, dict[datetime, _Mean]] = {m: defaultdict(_Mean) for m in metrics}
    for at, *values in rows:
        assert isinstance(at, datetime)
        start = at - timedelta(seconds=int(at.timestamp()) % bucket_s, microseconds=at.microsecond)
        for metric, value in zip(metrics, values, strict=True):
            if value is not None:
                buckets[metric][start].add(float(value))  # type: ignore[arg-type]
    return {
        metric: [(t, mean.value) for t, mean in sorted(by_start.items())]
        for metric, by_start in buckets.items()
    }
