"""One evaluation of a threshold rule over the live series of its metric (Prometheus' alerting rules).

Each sample of the rule's metric whose labels match the rule's matchers is a series, and each
series has at most one open alert (identified by its fingerprint). A series that breaches opens a
pending alert (firing at once when the rule has no `for` duration); a pending alert whose condition
has held for `for_s` fires. A series that stops breaching (or is gone from the samples) resolves a
pending alert at once, and a firing alert once `keep_firing_s` has passed since its last breach.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from apps.alerts.domain.matchers import Matcher, matches_all
from apps.alerts.domain.rules import Op, ThresholdRule, alert_labels, breaches, fingerprint
from apps.alerts.domain.states import AlertState

# Evaluations come from beat every MOC_ALERT_EVAL_S, each a little late by the queue: "for 10 s" at a
# 5 s interval would otherwise need a fourth evaluation whenever the third came 10 ms early of 10 s
# (seen trying it). Prometheus avoids this by stamping evaluations on an exact grid; MOC allows this slack.
TICK_SLACK_S = 1.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of a metric now: its labels and its value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class RuleSpec:
    rule_id: int
    name: str
    severity: str
    op: str
    threshold: float
    for_s: float
    keep_firing_s: float
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert of the rule that is pending or firing. `labels` lets a vanished series' decision
    carry them; it may be left empty where the caller keeps them itself."""

    fingerprint: str
    state: str
    started_at: dt.datetime
    last_breach_at: dt.datetime | None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the series' alert should be after this evaluation. `state` is the alert's new state
    (PENDING or FIRING for a new alert); `value` is None when the series is absent; `breach` says
    whether the condition held now (the caller then updates last_breach_at and the peak)."""

    fingerprint: str
    labels: dict[str, str]
    state: AlertState
    value: float | None
    breach: bool


def evaluate_rule(
    rule: RuleSpec, samples: Sequence[Sample], open_alerts: Mapping[str, OpenAlert], now: dt.datetime
) -> list[Decision]:
    """One Decision per series that has or gets an alert, open alerts of absent series included."""
    condition = ThresholdRule(op=rule.op, threshold=rule.threshold)
    decisions: list[Decision] = []
    seen: set[str] = set()
    for sample in samples:
        if not matches_all(rule.matchers, sample.labels):
            continue
        labels = alert_labels(rule.name, rule.severity, sample.labels)
        key = fingerprint(rule.rule_id, labels)
        if key in seen:  # the same series twice: the first sample counts
            continue
        seen.add(key)
        breach = breaches(condition, sample.value)
        state = _next_state(rule, open_alerts.get(key), breach, now)
        if state is not None:
            decisions.append(Decision(key, labels, state, sample.value, breach))
    for key, alert in open_alerts.items():
        if key not in seen:  # an absent series counts as no breach
            state = _next_state(rule, alert, False, now)
            if state is not None:
                decisions.append(Decision(key, dict(alert.labels), state, None, False))
    return decisions


def resolve_all(open_alerts: Mapping[str, OpenAlert]) -> list[Decision]:
    """Decisions that resolve every open alert (the rule was disabled or its metric is gone)."""
    return [Decision(k, dict(a.labels), AlertState.RESOLVED, None, False) for k, a in open_alerts.items()]


def _next_state(rule: RuleSpec, alert: OpenAlert | None, breach: bool, now: dt.datetime) -> AlertState | None:
    if alert is None:
        if not breach:
            return None
        return AlertState.FIRING if rule.for_s <= 0 else AlertState.PENDING
    if breach:
        if alert.state == AlertState.FIRING:
            return AlertState.FIRING
        held = (now - alert.started_at).total_seconds()
        return AlertState.FIRING if held + TICK_SLACK_S >= rule.for_s else AlertState.PENDING
    return AlertState.FIRING if _kept_firing(rule, alert, now) else AlertState.RESOLVED


def _kept_firing(rule: RuleSpec, alert: OpenAlert, now: dt.datetime) -> bool:
    """A firing alert keeps firing for keep_firing_s after its last breach (against flapping)."""
    if alert.state != AlertState.FIRING or alert.last_breach_at is None:
        return False
    return (now - alert.last_breach_at).total_seconds() < rule.keep_firing_s


def peak(op: str, threshold: float, peak_value: float | None, value: float) -> float:
    """The value furthest past the threshold in the rule's direction, of the peak so far and `value`."""
    if peak_value is None or math.isnan(peak_value):
        return value
    if op in (Op.GT, Op.GE):
        return max(peak_value, value)
    if op in (Op.LT, Op.LE):
        return min(peak_value, value)
    if op == Op.NE:
        return value if abs(value - threshold) > abs(peak_value - threshold) else peak_value
    return peak_value  # == : every breaching value is the threshold itself
