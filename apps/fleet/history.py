"""Reads of stored telemetry for charts: a device's metrics over a range, bucketed to fit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings

from apps.fleet.domain.history import bucket_for, downsample
from apps.fleet.models import Device, TelemetrySample


def device_history(
    *, device: Device, metrics: Sequence[str], start: datetime, end: datetime
) -> dict[str, object]:
    """`metrics` of `device` between `start` and `end`, averaged into buckets (see bucket_for)."""
    bucket_s = bucket_for(end - start, finest_s=settings.MOC_TELEMETRY_STORE_S)
    rows = (
        TelemetrySample.objects.filter(device=device, at__gte=start, at__lt=end)
        .order_by("at")
        .values_list("at", *metrics)
    )
    series = downsample(rows.iterator(chunk_size=5000), metrics=metrics, bucket_s=bucket_s)
    return {
        "device": device.pk,
        "start": start,
        "end": end,
        "bucket_s": bucket_s,
        "metrics": {
            metric: [[at, round(value, 3)] for at, value in points] for metric, points in series.items()
        },
    }
