"""One evaluation of a threshold rule over a metric's series (pure): for, keep-firing, absent series."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest

from apps.alerts.domain.evaluation import (
    Decision,
    OpenAlert,
    RuleSpec,
    Sample,
    evaluate_rule,
    peak,
    resolve_all,
)
from apps.alerts.domain.matchers import Matcher
from apps.alerts.domain.rules import alert_labels, fingerprint
from apps.alerts.domain.states import AlertState

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
GPU0 = {"node": "gpu-01", "gpu": "0"}
GPU1 = {"node": "gpu-01", "gpu": "1"}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def rule(**changes: object) -> RuleSpec:
    fields: dict[str, object] = {
        "rule_id": 7,
        "name": "GpuHot",
        "severity": "warning",
        "op": ">",
        "threshold": 85.0,
        "for_s": 60.0,
        "keep_firing_s": 0.0,
        "matchers": (),
    }
    return RuleSpec(**{**fields, **changes})  # type: ignore[arg-type]


def key(series: Mapping[str, str], spec: RuleSpec | None = None) -> str:
    spec = spec or rule()
    return fingerprint(spec.rule_id, alert_labels(spec.name, spec.severity, series))


def opened(
    state: AlertState, started: float, last_breach: float | None, series: Mapping[str, str] = GPU0
) -> dict[str, OpenAlert]:
    return {
        key(series): OpenAlert(
            key(series), state.value, at(started), None if last_breach is None else at(last_breach)
        )
    }


def one(decisions: list[Decision]) -> Decision:
    (decision,) = decisions
    return decision


def test_a_quiet_series_without_an_alert_decides_nothing() -> None:
    assert evaluate_rule(rule(), [Sample(GPU0, 80.0)], {}, T0) == []


def test_a_breach_opens_a_pending_alert_with_the_alert_labels() -> None:
    decision = one(evaluate_rule(rule(), [Sample(GPU0, 90.0)], {}, T0))

    assert decision == Decision(
        key(GPU0), {**GPU0, "alertname": "GpuHot", "severity": "warning"}, AlertState.PENDING, 90.0, True
    )


def test_a_pending_alert_fires_once_the_condition_held_for_the_duration() -> None:
    too_short = one(evaluate_rule(rule(), [Sample(GPU0, 90.0)], opened(AlertState.PENDING, 0, 0), at(58.9)))
    held = one(evaluate_rule(rule(), [Sample(GPU0, 91.0)], opened(AlertState.PENDING, 0, 58.9), at(60)))

    assert too_short.state == AlertState.PENDING
    assert (held.state, held.value, held.breach) == (AlertState.FIRING, 91.0, True)


def test_an_evaluation_a_little_early_still_fires_a_held_condition() -> None:
    """Beat's evaluations are not stamped on an exact grid: at a 5 s interval, "for 10 s" must fire
    on the third evaluation even when it came a few milliseconds before 10 s (seen trying MOC)."""
    third = one(
        evaluate_rule(rule(for_s=10), [Sample(GPU0, 90.0)], opened(AlertState.PENDING, 0, 5), at(9.998))
    )

    assert third.state == AlertState.FIRING


def test_a_rule_without_a_duration_fires_at_once() -> None:
    assert one(evaluate_rule(rule(for_s=0), [Sample(GPU0, 90.0)], {}, T0)).state == AlertState.FIRING


def test_a_pending_alert_whose_condition_stops_resolves_without_firing() -> None:
    decision = one(evaluate_rule(rule(), [Sample(GPU0, 80.0)], opened(AlertState.PENDING, 0, 0), at(30)))

    assert (decision.state, decision.breach, decision.value) == (AlertState.RESOLVED, False, 80.0)


def test_a_pending_alert_resolves_at_once_even_with_keep_firing() -> None:
    spec = rule(keep_firing_s=300)

    decision = one(evaluate_rule(spec, [Sample(GPU0, 80.0)], opened(AlertState.PENDING, 0, 0), at(30)))

    assert decision.state == AlertState.RESOLVED


def test_keep_firing_holds_a_flapping_series_then_resolves() -> None:
    spec = rule(for_s=0, keep_firing_s=60)
    alerts: dict[str, OpenAlert] = {}
    states = []
    for second, value in [(0, 90.0), (15, 80.0), (30, 90.0), (45, 80.0), (89, 80.0), (90, 80.0), (105, 80.0)]:
        for d in evaluate_rule(spec, [Sample(GPU0, value)], alerts, at(second)):
            states.append((second, d.state))
            was = alerts.get(d.fingerprint)
            last = at(second) if d.breach else was.last_breach_at if was else None
            alerts = {
                d.fingerprint: OpenAlert(d.fingerprint, d.state, was.started_at if was else at(second), last)
            }
            if d.state == AlertState.RESOLVED:
                alerts = {}

    # Last breached at 30 s: firing until just before 90 s, resolved at 90 s, then nothing to decide.
    firing, resolved = AlertState.FIRING, AlertState.RESOLVED
    assert states == [(0, firing), (15, firing), (30, firing), (45, firing), (89, firing), (90, resolved)]


def test_without_keep_firing_a_firing_alert_resolves_on_the_first_quiet_evaluation() -> None:
    decision = one(evaluate_rule(rule(), [Sample(GPU0, 80.0)], opened(AlertState.FIRING, 0, 60), at(75)))

    assert decision.state == AlertState.RESOLVED


def test_an_absent_series_counts_as_no_breach_and_keeps_its_labels() -> None:
    labels = alert_labels("GpuHot", "warning", GPU0)
    alerts = {key(GPU0): OpenAlert(key(GPU0), "firing", T0, at(60), labels)}

    decision = one(evaluate_rule(rule(), [], alerts, at(75)))

    assert decision == Decision(key(GPU0), labels, AlertState.RESOLVED, None, False)


def test_an_absent_series_keeps_firing_for_keep_firing_s() -> None:
    decision = one(evaluate_rule(rule(keep_firing_s=120), [], opened(AlertState.FIRING, 0, 60), at(90)))

    assert (decision.state, decision.value, decision.breach) == (AlertState.FIRING, None, False)


def test_nan_never_breaches() -> None:
    nan = float("nan")

    assert evaluate_rule(rule(op="!=", threshold=0.0), [Sample(GPU0, nan)], {}, T0) == []
    resolved = one(evaluate_rule(rule(), [Sample(GPU0, nan)], opened(AlertState.FIRING, 0, 60), at(75)))
    assert resolved.state == AlertState.RESOLVED


def test_matchers_select_the_series() -> None:
    spec = rule(for_s=0, matchers=(Matcher("gpu", "=", "1"),))

    decision = one(evaluate_rule(spec, [Sample(GPU0, 99.0), Sample(GPU1, 99.0)], {}, T0))

    assert decision.labels["gpu"] == "1"


def test_each_series_gets_its_own_alert() -> None:
    decisions = evaluate_rule(rule(), [Sample(GPU0, 90.0), Sample(GPU1, 91.0)], {}, T0)

    assert {d.fingerprint for d in decisions} == {key(GPU0), key(GPU1)}


def test_resolve_all_resolves_every_open_alert() -> None:
    alerts = {**opened(AlertState.FIRING, 0, 0), **opened(AlertState.PENDING, 0, 0, GPU1)}

    assert {(d.fingerprint, d.state) for d in resolve_all(alerts)} == {
        (key(GPU0), AlertState.RESOLVED),
        (key(GPU1), AlertState.RESOLVED),
    }


@pytest.mark.parametrize(
    ("op", "values", "expected"),
    [
        (">", [90.0, 97.0, 93.0], 97.0),
        (">=", [85.0, 86.0], 86.0),
        ("<", [10.0, 4.0, 8.0], 4.0),
        ("<=", [5.0, 5.0, 3.0], 3.0),
        ("!=", [80.0, 95.0, 70.0], 70.0),  # furthest from 85 on either side
        ("==", [85.0, 85.0], 85.0),
    ],
)
def test_peak_is_the_value_furthest_past_the_threshold(op: str, values: list[float], expected: float) -> None:
    top: float | None = None
    for value in values:
        top = peak(op, 85.0, top, value)

    assert top == expected


def test_a_firing_alert_keeps_firing_when_the_rules_duration_is_raised() -> None:
    longer = rule(for_s=3600)

    decision = one(evaluate_rule(longer, [Sample(GPU0, 90.0)], opened(AlertState.FIRING, 0, 60), at(120)))

    assert decision.state == AlertState.FIRING


def test_the_same_series_twice_in_one_read_counts_once() -> None:
    decisions = evaluate_rule(rule(for_s=0), [Sample(GPU0, 90.0), Sample(dict(GPU0), 70.0)], {}, T0)

    assert [(d.state, d.value) for d in decisions] == [(AlertState.FIRING, 90.0)]
