"""Replaying a rule over a made-up day of snapshots: what it would have fired, and when (pure)."""

from __future__ import annotations

import datetime as dt

from apps.alerts.domain.evaluation import RuleSpec, Sample
from apps.alerts.domain.preview import Fired, replay

DAY = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
RULE = RuleSpec(
    rule_id=3,
    name="GpuHot",
    severity="critical",
    op=">",
    threshold=85.0,
    for_s=300.0,
    keep_firing_s=0.0,
    matchers=(),
)
GPU0 = {"node": "gpu-01", "gpu": "0"}
GPU1 = {"node": "gpu-01", "gpu": "1"}


def minute(n: int) -> dt.datetime:
    return DAY + dt.timedelta(minutes=n)


def day_of(temps: dict[int, tuple[float, float]]) -> list[tuple[dt.datetime, list[Sample]]]:
    """A snapshot each minute of the day: GPU 0 and GPU 1 at 40 °C unless `temps` says otherwise."""
    return [
        (
            minute(n),
            [Sample(GPU0, temps.get(n, (40.0, 40.0))[0]), Sample(GPU1, temps.get(n, (40.0, 40.0))[1])],
        )
        for n in range(24 * 60)
    ]


def labels(series: dict[str, str]) -> dict[str, str]:
    return {**series, "alertname": "GpuHot", "severity": "critical"}


def test_a_quiet_day_fires_nothing() -> None:
    assert replay(RULE, day_of({})) == []


def test_a_hot_hour_fires_after_the_duration_and_resolves_with_its_peak() -> None:
    hot = {n: (90.0 + (n == 630) * 6.0, 40.0) for n in range(600, 660)}  # 10:00 to 10:59, 96 at 10:30

    (fired,) = replay(RULE, day_of(hot))

    assert fired == Fired(labels(GPU0), minute(600), minute(605), minute(660), 96.0)


def test_a_short_spike_stays_pending_and_resolves_without_firing() -> None:
    spike = {n: (40.0, 99.0) for n in range(120, 123)}  # 3 minutes < the 5-minute `for`

    (pending,) = replay(RULE, day_of(spike))

    assert pending == Fired(labels(GPU1), minute(120), None, minute(123), 99.0)


def test_an_alert_still_open_at_the_end_has_no_resolved_time() -> None:
    late = {n: (91.0, 40.0) for n in range(1400, 24 * 60)}

    (open_alert,) = replay(RULE, day_of(late))

    assert (open_alert.fired_at, open_alert.resolved_at) == (minute(1405), None)


def test_every_occurrence_is_its_own_alert_in_start_order() -> None:
    twice = {n: (90.0, 40.0) for n in [*range(60, 70), *range(200, 210)]}
    twice.update({n: (40.0, 95.0) for n in range(100, 110)})

    fired = replay(RULE, list(reversed(day_of(twice))))  # handed over in any order

    assert [(f.labels["gpu"], f.started_at, f.fired_at) for f in fired] == [
        ("0", minute(60), minute(65)),
        ("1", minute(100), minute(105)),
        ("0", minute(200), minute(205)),
    ]


def test_a_series_missing_from_the_snapshots_resolves_its_alert() -> None:
    snapshots = [(minute(0), [Sample(GPU0, 90.0)]), (minute(10), [Sample(GPU0, 90.0)]), (minute(11), [])]

    (fired,) = replay(RULE, snapshots)

    assert (fired.fired_at, fired.resolved_at) == (minute(10), minute(11))
