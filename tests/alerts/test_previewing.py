"""A rule's preview over the stored day: the alert a threshold would have fired, the series it
watched for a chart, and a plain answer for a metric MOC keeps no history of."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts.domain.evaluation import RuleSpec
from apps.alerts.domain.matchers import Matcher
from apps.alerts.previewing import MAX_POINTS, preview
from apps.fleet.models import TelemetrySample
from tests.alerts.test_history import sim_device
from tests.fleet.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def rule(**fields: object) -> RuleSpec:
    spec = {
        "rule_id": 7,
        "name": "GpuHot",
        "severity": "critical",
        "op": ">",
        "threshold": 85.0,
        "for_s": 300.0,
        "keep_firing_s": 0.0,
        "matchers": (),
    }
    return RuleSpec(**{**spec, **fields})  # type: ignore[arg-type]


def test_the_preview_finds_the_alert_a_threshold_would_have_fired_in_the_stored_day() -> None:
    now = timezone.now().replace(second=0, microsecond=0)  # readings on whole minutes, as the buckets
    hot = sim_device()
    cool = DeviceFactory(node=hot.node, index=1)
    start = now - timedelta(hours=20)
    rows = []
    for minute in range(0, 20 * 60, 1):  # a reading a minute over 20 hours
        at = start + timedelta(minutes=minute)
        heat = 92.0 if 600 <= minute < 620 else 95.0 if 900 <= minute < 902 else 60.0
        rows += [
            TelemetrySample(device=hot, at=at, temperature_c=heat),
            TelemetrySample(device=cool, at=at, temperature_c=50.0),
        ]
    TelemetrySample.objects.bulk_create(rows)

    found = preview(rule=rule(), metric="DCGM_FI_DEV_GPU_TEMP", now=now)

    assert found["history"] is True
    assert found["metric"] == "DCGM_FI_DEV_GPU_TEMP"
    # Twenty minutes at 92 °C fire after `for` (5 minutes); two minutes at 95 °C only went pending.
    fired, pending = found["alerts"]
    assert fired["labels"]["device"] == "gpu0"
    assert fired["labels"]["alertname"] == "GpuHot"
    assert fired["peak_value"] == 92.0
    began = start + timedelta(minutes=600)
    assert fired["started_at"] == began.isoformat()
    assert fired["fired_at"] == (began + timedelta(minutes=5)).isoformat()
    assert fired["resolved_at"] == (began + timedelta(minutes=20)).isoformat()
    assert pending["fired_at"] is None
    assert pending["peak_value"] == 95.0
    # The device that alerted is charted first; every series fits a chart.
    assert [s["labels"]["device"] for s in found["series"]] == ["gpu0", "gpu1"]
    assert all(len(s["points"]) <= MAX_POINTS for s in found["series"])
    assert max(v for _, v in found["series"][0]["points"]) == 95.0


def test_the_rule_matchers_choose_the_series() -> None:
    now = timezone.now()
    hot = sim_device()
    other = DeviceFactory(node=hot.node, index=1)
    for device in (hot, other):
        TelemetrySample.objects.create(device=device, at=now - timedelta(minutes=30), temperature_c=99.0)

    found = preview(
        rule=rule(for_s=0, matchers=(Matcher("device", "=", "gpu1"),)), metric="DCGM_FI_DEV_GPU_TEMP", now=now
    )

    assert [a["labels"]["device"] for a in found["alerts"]] == ["gpu1"]
    assert [s["labels"]["device"] for s in found["series"]] == ["gpu1"]


def test_a_metric_without_history_is_reported_as_checked_live_only() -> None:
    now = timezone.now()

    found = preview(rule=rule(op="==", threshold=1.0), metric="moc_device_health", now=now)

    assert found == {
        "metric": "moc_device_health",
        "since": (now - timedelta(days=1)).isoformat(),
        "until": now.isoformat(),
        "history": False,
        "reason": "MOC keeps no history of moc_device_health; the rule is checked against live values only",
        "alerts": [],
        "series": [],
    }
