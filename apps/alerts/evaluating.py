"""The evaluation beat's writes: threshold rules over the live series, and the mute flags.

rules_evaluate reads every watched metric once (sources.current, as /metrics reads it), then, in
one transaction per rule holding the rule's row and its open alerts, applies what
domain.evaluation decided: opens, fires, keeps and resolves alerts. mutes_refresh then marks each
open alert silenced or inhibited; a silence or inhibit rule whose matchers cannot be matched (a
regular expression that does not compile, written past validation or before it) is left out with a
warning, not a failure of every mute. Every alert opened and every state or flag moved is announced
with signals.alert_changed (inside the transaction; receivers publish on commit). A mere new value
is not: the live view and the notifier care about moves, not every reading.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction

from apps.alerts import selectors, signals, sources
from apps.alerts.domain import matchers as m
from apps.alerts.domain.catalog import CATALOG
from apps.alerts.domain.evaluation import (
    Decision,
    OpenAlert,
    RuleSpec,
    Sample,
    evaluate_rule,
    peak,
    resolve_all,
)
from apps.alerts.domain.inhibition import inhibited
from apps.alerts.domain.rules import RuleKind
from apps.alerts.domain.states import ALERT, OPEN, AlertState
from apps.alerts.domain.templates import render_annotations
from apps.alerts.models import Alert, AlertRule, Silence
from apps.core import audit
from apps.core.transitions import transition

log = logging.getLogger(__name__)


def rule_spec(rule: AlertRule) -> RuleSpec:
    """The domain's view of an enabled threshold rule (its threshold is set)."""
    assert rule.threshold is not None
    return RuleSpec(
        rule_id=rule.pk,
        name=rule.name,
        severity=rule.severity,
        op=rule.op,
        threshold=rule.threshold,
        for_s=float(rule.for_seconds),
        keep_firing_s=float(rule.keep_firing_seconds),
        matchers=m.to_matchers(rule.matchers),
    )


def _evaluable(rule: AlertRule) -> bool:
    return rule.enabled and rule.metric in CATALOG and rule.threshold is not None


def rules_evaluate(*, now: dt.datetime) -> int:
    """Evaluate every threshold rule at `now`; a disabled rule (or one whose metric left the
    catalogue) resolves its open alerts. Then refresh the mute flags. How many alerts were
    opened or moved. A rule whose evaluation fails is logged and skipped (its writes undone)."""
    rules = list(AlertRule.objects.filter(kind=RuleKind.THRESHOLD))
    live = [r for r in rules if _evaluable(r)]
    samples = sources.current({r.metric for r in live}) if live else {}
    with_open = set(
        Alert.objects.filter(rule__kind=RuleKind.THRESHOLD, state__in=OPEN).values_list("rule_id", flat=True)
    )
    silences = selectors.silences_in_force(now=now)
    changed = 0
    for rule in rules:
        if not (_evaluable(rule) or rule.pk in with_open):
            continue
        try:
            changed += _rule_evaluate(rule.pk, samples, silences, now)
        except Exception:
            # Its transaction rolled back: this rule is left as it was, and the others go on.
            log.exception("alerts: evaluating rule %s (%s) failed", rule.pk, rule.name)
    try:
        mutes_refresh(now=now)
    except Exception:
        # The rules' writes are committed and counted; the round's own mute step tries again.
        log.exception("alerts: refreshing the mute flags after the threshold rules failed")
    return changed


@transaction.atomic
def _rule_evaluate(
    rule_id: int, samples: dict[str, list[Sample]], silences: list[m.Silence], now: dt.datetime
) -> int:
    # The rule's row is locked first: two evaluations of one rule queue here rather than both
    # opening the same series' alert; it is also re-read, so an edit made meanwhile counts.
    rule = AlertRule.objects.select_for_update().filter(pk=rule_id).first()
    if rule is None:
        return 0
    alerts = {a.fingerprint: a for a in Alert.objects.select_for_update().filter(rule=rule, state__in=OPEN)}
    open_alerts = {
        key: OpenAlert(key, a.state, a.started_at, a.last_breach_at, a.labels) for key, a in alerts.items()
    }
    if _evaluable(rule):
        decisions = evaluate_rule(rule_spec(rule), samples.get(rule.metric, []), open_alerts, now)
    else:
        decisions = resolve_all(open_alerts)
    changed = 0
    kept: list[Alert] = []
    for decision in decisions:
        alert = alerts.get(decision.fingerprint)
        if alert is None:
            _open(rule, decision, silences, now)
            changed += 1
        elif decision.state == alert.state:
            if _refresh(rule, alert, decision, now):
                kept.append(alert)
        else:
            changed += _move(rule, alert, decision, now)
    if kept:
        # One statement for every alert that only got a new value or breach (rows locked above).
        Alert.objects.bulk_update(kept, list(_REFRESHED))
    return changed


def _open(rule: AlertRule, decision: Decision, silences: list[m.Silence], now: dt.datetime) -> Alert:
    # Born silenced when a silence matches, so its first notice is not followed by a mute at once.
    firing = decision.state == AlertState.FIRING
    alert = Alert.objects.create(
        rule=rule,
        fingerprint=decision.fingerprint,
        labels=decision.labels,
        state=decision.state.value,
        annotations=render_annotations(rule.summary, rule.description, decision.labels, decision.value),
        value=decision.value,
        peak_value=decision.value,
        fired_value=decision.value if firing else None,
        started_at=now,
        fired_at=now if firing else None,
        last_breach_at=now,
        silenced=m.is_silenced(decision.labels, silences, now),
    )
    signals.alert_changed.send(sender=Alert, alert=alert)
    return alert


# What a round writes on an open alert that stays in its state.
_REFRESHED = ("value", "last_breach_at", "peak_value", "updated_at")


def _figures(rule: AlertRule, alert: Alert, decision: Decision, now: dt.datetime) -> dict[str, Any]:
    """The value, last breach and peak a decision gives an open alert."""
    figures: dict[str, Any] = {}
    if decision.value is not None:
        figures["value"] = decision.value
    if decision.breach and decision.value is not None:
        figures["last_breach_at"] = now
        threshold = rule.threshold if rule.threshold is not None else decision.value
        figures["peak_value"] = peak(rule.op, threshold, alert.peak_value, decision.value)
    return figures


def _refresh(rule: AlertRule, alert: Alert, decision: Decision, now: dt.datetime) -> bool:
    """Set on `alert` the figures that moved (not written here); whether any did."""
    moved = {
        name: value
        for name, value in _figures(rule, alert, decision, now).items()
        if getattr(alert, name) != value
    }
    if not moved:
        return False
    for name, value in {**moved, "updated_at": now}.items():
        setattr(alert, name, value)
    return True


def _move(rule: AlertRule, alert: Alert, decision: Decision, now: dt.datetime) -> int:
    """Move an open alert (locked) to the decision's state; 1 when it moved, else 0."""
    changes = _figures(rule, alert, decision, now)
    if decision.state == AlertState.FIRING:
        value = decision.value if decision.value is not None else alert.value
        annotations = render_annotations(rule.summary, rule.description, alert.labels, value)
        changes |= {"fired_at": now, "fired_value": value, "annotations": annotations}
    else:
        changes["resolved_at"] = now
    if not transition(alert, decision.state, machine=ALERT, **changes):
        return 0
    signals.alert_changed.send(sender=Alert, alert=alert)
    return 1


@transaction.atomic
def mutes_refresh(*, now: dt.datetime) -> None:
    """Set `silenced` and `inhibited` on every open alert as the silences in force and the enabled
    inhibit rules say at `now`, writing only the flags that changed; and end the silences made to
    last until their alert resolved, once it has."""
    _silences_end_resolved(now)
    alerts = list(Alert.objects.filter(state__in=OPEN))
    silences = selectors.silences_in_force(now=now)
    rules = selectors.inhibit_specs()
    firing = [a.labels for a in alerts if a.state == AlertState.FIRING]
    for alert in alerts:
        flags = {
            "silenced": m.is_silenced(alert.labels, silences, now),
            "inhibited": inhibited(alert.labels, firing, rules),
        }
        moved = {name: value for name, value in flags.items() if getattr(alert, name) != value}
        if moved and Alert.objects.filter(pk=alert.pk, state__in=OPEN).update(**moved, updated_at=now):
            for name, value in moved.items():
                setattr(alert, name, value)
            signals.alert_changed.send(sender=Alert, alert=alert)


def _silences_end_resolved(now: dt.datetime) -> None:
    """End now each unexpired silence that was to end when its alert resolved, and did."""
    due = Silence.objects.filter(expire_on_resolve=True, alert__state=AlertState.RESOLVED, ends_at__gt=now)
    for silence in due.select_for_update(of=("self",)):
        silence_end(silence=silence, now=now)
        log.info("silence %s ended: its alert %s resolved", silence.pk, silence.alert_id)


def silence_end(*, silence: Silence, now: dt.datetime) -> Silence:
    """End an unexpired silence at `now` (one not started yet ends as it starts), audited. The one
    way a silence is ended: by a person (services.silence_expire) or by its alert resolving. The
    caller refreshes the mute flags."""
    changes: dict[str, Any] = {"ends_at": now}
    if silence.starts_at > now:
        changes["starts_at"] = now
    old_end = silence.ends_at
    Silence.objects.filter(pk=silence.pk).update(**changes, updated_at=now)
    for name, value in changes.items():
        setattr(silence, name, value)
    audit.record("expire", silence, changes={"ends_at": [old_end.isoformat(), now.isoformat()]})
    return silence


__all__ = ["mutes_refresh", "rule_spec", "rules_evaluate", "silence_end"]
