"""Stored telemetry: window means written in bulk, old rows rolled up into minutes, pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test.utils import override_settings

from apps.fleet import retention
from apps.fleet.domain.kinds import Resolution
from apps.fleet.models import TelemetrySample
from tests.fleet.factories import DeviceFactory, TelemetrySampleFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)


def test_storing_a_window_writes_one_row_per_device_with_whole_bytes() -> None:
    a, b = DeviceFactory(), DeviceFactory()
    means = {
        a.pk: {
            "gpu_util": 40.0,
            "mem_util": None,
            "mem_used_bytes": 1000.6,
            "temperature_c": 50.0,
            "power_w": 90.0,
        },
        b.pk: {
            "gpu_util": None,
            "mem_util": None,
            "mem_used_bytes": None,
            "temperature_c": None,
            "power_w": None,
        },
    }

    written = retention.samples_store(at=NOW, means=means)

    # A device with no figure at all (unreadable the whole window) gets no row.
    assert written == 1
    row = TelemetrySample.objects.get()
    assert (row.device_id, row.resolution_s, row.mem_used_bytes, row.gpu_util) == (
        a.pk,
        Resolution.RAW,
        1001,
        40.0,
    )


@override_settings(MOC_TELEMETRY_RAW_HOURS=24, MOC_TELEMETRY_RETENTION_DAYS=7)
def test_compaction_rolls_rows_older_than_a_day_into_minute_means() -> None:
    device = DeviceFactory()
    old_minute = NOW - timedelta(days=2)
    old_minute = old_minute.replace(second=0, microsecond=0)
    for second, util in [(0, 10.0), (10, 20.0), (50, 60.0)]:
        TelemetrySampleFactory(device=device, at=old_minute + timedelta(seconds=second), gpu_util=util)
    TelemetrySampleFactory(device=device, at=old_minute + timedelta(minutes=1), gpu_util=99.0)
    recent = TelemetrySampleFactory(device=device, at=NOW - timedelta(hours=1))

    result = retention.samples_compact(now=NOW)

    assert (result.rolled_up, result.rollups, result.pruned) == (4, 2, 0)
    rollups = list(TelemetrySample.objects.filter(resolution_s=Resolution.MINUTE).order_by("at"))
    assert [(r.at, r.gpu_util) for r in rollups] == [
        (old_minute, 30.0),
        (old_minute + timedelta(minutes=1), 99.0),
    ]
    assert list(TelemetrySample.objects.filter(resolution_s=Resolution.RAW)) == [recent]


@override_settings(MOC_TELEMETRY_RAW_HOURS=24, MOC_TELEMETRY_RETENTION_DAYS=7)
def test_compaction_is_harmless_when_run_twice() -> None:
    device = DeviceFactory()
    TelemetrySampleFactory(device=device, at=NOW - timedelta(days=2))
    retention.samples_compact(now=NOW)

    again = retention.samples_compact(now=NOW)

    assert (again.rolled_up, again.rollups) == (0, 0)
    assert TelemetrySample.objects.count() == 1


@override_settings(MOC_TELEMETRY_RETENTION_DAYS=7)
def test_rows_past_retention_are_deleted() -> None:
    device = DeviceFactory()
    TelemetrySampleFactory(
        device=device, at=NOW - timedelta(days=7, seconds=1), resolution_s=Resolution.MINUTE
    )
    kept = TelemetrySampleFactory(device=device, at=NOW - timedelta(days=6), resolution_s=Resolution.MINUTE)

    with time_machine.travel(NOW, tick=False):
        result = retention.samples_compact()

    assert result.pruned == 1
    assert list(TelemetrySample.objects.all()) == [kept]
