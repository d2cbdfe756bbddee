"""The history page's figures (Alertmanager #1976): fired per day, time firing, last fired."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.alerts.domain.states import AlertState
from apps.alerts.reports import history_summary
from tests.alerts.factories import AlertFactory, AlertRuleFactory

pytestmark = pytest.mark.django_db

TZ = timezone.get_default_timezone()
NOW = dt.datetime(2024, 6, 30, 12, 0, tzinfo=TZ)


def _fired(rule: object, n: int, *, at: dt.datetime, minutes: float | None, state: str = "resolved") -> None:
    resolved = None if minutes is None else at + dt.timedelta(minutes=minutes)
    AlertFactory(
        rule=rule,
        series={"n": str(n)},
        state=state,
        started_at=at - dt.timedelta(minutes=1),
        fired_at=at,
        resolved_at=resolved,
    )


def test_counts_each_rules_alerts_per_day_and_their_time_firing() -> None:
    hot, down = AlertRuleFactory(name="GpuHot"), AlertRuleFactory(name="NodeDown")
    _fired(hot, 1, at=NOW - dt.timedelta(days=2, hours=1), minutes=10)
    _fired(hot, 2, at=NOW - dt.timedelta(days=2, hours=2), minutes=30)
    _fired(hot, 3, at=NOW - dt.timedelta(hours=1), minutes=20)
    _fired(down, 4, at=NOW - dt.timedelta(minutes=30), minutes=None, state=AlertState.FIRING)

    summary = history_summary(days=7, now=NOW)

    assert summary["dates"][-1] == "2024-06-30"
    assert len(summary["dates"]) == 7
    by_name = {r["name"]: r for r in summary["rules"]}
    assert by_name["GpuHot"]["fired"] == 3
    assert by_name["GpuHot"]["per_day"] == [0, 0, 0, 0, 2, 0, 1]
    assert by_name["GpuHot"]["firing_s"] == 60 * 60  # 10 + 30 + 20 minutes
    assert by_name["GpuHot"]["median_firing_s"] == 20 * 60
    assert by_name["GpuHot"]["last_fired_at"] == (NOW - dt.timedelta(hours=1)).isoformat()
    # Still firing: counted up to now.
    assert by_name["NodeDown"]["firing_s"] == 30 * 60
    assert [r["name"] for r in summary["rules"]] == ["GpuHot", "NodeDown"]
    assert (summary["fired"], summary["firing_s"]) == (4, 90 * 60)


def test_leaves_out_what_never_fired_or_ended_before_the_window() -> None:
    rule = AlertRuleFactory()
    AlertFactory(rule=rule, series={"n": "1"}, state=AlertState.PENDING, fired_at=None)
    _fired(rule, 2, at=NOW - dt.timedelta(days=10), minutes=5)

    summary = history_summary(days=7, now=NOW)

    assert summary["rules"] == []
    assert summary["fired"] == 0


def test_an_alert_firing_across_the_windows_start_counts_only_its_time_inside() -> None:
    rule = AlertRuleFactory()
    since = dt.datetime(2024, 6, 24, tzinfo=TZ)
    _fired(rule, 1, at=since - dt.timedelta(hours=1), minutes=180)

    (row,) = history_summary(days=7, now=NOW)["rules"]

    assert row["fired"] == 0  # it fired before the window
    assert row["firing_s"] == 2 * 3600
