"""Averaging readings into stored rows and chart buckets (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.fleet.domain.history import STORED_METRICS, SampleWindow, bucket_for, downsample

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def test_a_window_averages_each_metric_and_skips_missing_readings() -> None:
    window = SampleWindow()
    window.add(1, {"gpu_util": 10.0, "temperature_c": None, "power_w": 100})
    window.add(1, {"gpu_util": 30.0, "temperature_c": 60.0})

    means = window.flush()

    assert means == {
        1: {
            "gpu_util": 20.0,
            "mem_util": None,
            "mem_used_bytes": None,
            "temperature_c": 60.0,
            "power_w": 100.0,
        }
    }
    assert window.flush() == {}  # flushing starts afresh


@pytest.mark.parametrize(
    ("span", "bucket"),
    [
        (timedelta(minutes=15), 10),
        (timedelta(hours=1), 10),
        (timedelta(hours=6), 60),
        (timedelta(hours=24), 300),
        (timedelta(days=7), 1800),
        (timedelta(days=400), 6 * 3600),
    ],
)
def test_the_bucket_keeps_a_range_under_six_hundred_points(span: timedelta, bucket: int) -> None:
    assert bucket_for(span, finest_s=10) == bucket
    assert span.total_seconds() / bucket <= 600 or bucket == 6 * 3600


def test_the_bucket_is_never_finer_than_what_is_stored() -> None:
    assert bucket_for(timedelta(minutes=5), finest_s=60) == 60


def test_downsampling_averages_rows_per_bucket_and_leaves_gaps_empty() -> None:
    rows = [
        (T0 + timedelta(seconds=1), 10.0, None),
        (T0 + timedelta(seconds=59), 30.0, 50.0),
        (T0 + timedelta(minutes=3), 90.0, None),
    ]

    series = downsample(rows, metrics=["gpu_util", "temperature_c"], bucket_s=60)

    assert series["gpu_util"] == [(T0, 20.0), (T0 + timedelta(minutes=3), 90.0)]
    assert series["temperature_c"] == [(T0, 50.0)]


def test_every_stored_metric_is_a_column_of_a_sample() -> None:
    from apps.fleet.models import TelemetrySample

    columns = {field.name for field in TelemetrySample._meta.fields}
    assert set(STORED_METRICS) <= columns
