"""Writes to alerts: observing a rule's value, acknowledging, and silences."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.alerts.domain.matchers import SilenceStatus, matches_all, silence_status, to_matchers
from apps.alerts.domain.rules import ThresholdRule, alert_labels, evaluate, fingerprint
from apps.alerts.domain.states import ALERT, OPEN, AlertState
from apps.alerts.models import Alert, AlertRule, Silence
from apps.core import audit
from apps.core.domain.errors import Conflict
from apps.core.transitions import transition


def _threshold_rule(rule: AlertRule) -> ThresholdRule:
    return ThresholdRule(op=rule.op, threshold=rule.threshold, for_seconds=rule.for_seconds)


@transaction.atomic
def alert_observe(
    *, rule: AlertRule, series: dict[str, str], value: float | None, now: dt.datetime
) -> Alert | None:
    """Apply one observation of the rule's metric on one series to that series' alert.

    Opens a pending alert when the condition starts holding, fires it once it has held
    for the rule's duration, and resolves it when the condition stops (or the rule is
    disabled). Returns the alert, or None when there is none.
    """
    if not matches_all(to_matchers(rule.matchers), series):
        return None
    labels = alert_labels(rule.name, rule.severity, series)
    key = fingerprint(rule.pk, labels)
    alert = Alert.objects.select_for_update().filter(fingerprint=key, state__in=OPEN).first()
    since = alert.started_at if alert is not None else None
    decision = evaluate(_threshold_rule(rule), value if rule.enabled else None, since, now)
    if decision is None:
        return None
    if alert is None:
        alert = Alert.objects.create(rule=rule, fingerprint=key, labels=labels, value=value, started_at=now)
    elif value is not None:
        Alert.objects.filter(pk=alert.pk).update(value=value, updated_at=now)
        alert.value = value
    # A firing alert whose rule's duration was raised stays firing until the condition stops.
    if decision.value != alert.state and ALERT.can(alert.state, decision):
        stamp = {AlertState.FIRING: "fired_at", AlertState.RESOLVED: "resolved_at"}[decision]
        transition(alert, decision, machine=ALERT, **{stamp: now})
    return alert


@transaction.atomic
def alert_acknowledge(*, alert: Alert, user: AbstractBaseUser) -> Alert:
    """Mark an open alert as being handled by `user`; acknowledging twice keeps the first."""
    now = timezone.now()
    updated = Alert.objects.filter(pk=alert.pk, state__in=OPEN, acknowledged_at__isnull=True).update(
        acknowledged_by=user, acknowledged_at=now, updated_at=now
    )
    alert.refresh_from_db()
    if not updated and not alert.is_open:
        raise Conflict(f"The alert is {alert.state}; only pending or firing alerts can be acknowledged.")
    if updated:
        audit.record("acknowledge", alert, changes={"acknowledged_by": [None, user.get_username()]})
    return alert


def _check_silence(silence: Silence, now: dt.datetime) -> None:
    silence.full_clean(exclude=["created_by"])
    if silence.ends_at <= now:
        raise ValidationError({"ends_at": ["must be in the future"]})


@transaction.atomic
def silence_create(
    *,
    created_by: AbstractBaseUser | None,
    matchers: list[dict[str, str]],
    ends_at: dt.datetime,
    comment: str,
    starts_at: dt.datetime | None = None,
) -> Silence:
    """A silence from `starts_at` (default now) to `ends_at`."""
    now = timezone.now()
    silence = Silence(
        matchers=matchers, starts_at=starts_at or now, ends_at=ends_at, comment=comment, created_by=created_by
    )
    _check_silence(silence, now)
    silence.save()
    return silence


@transaction.atomic
def silence_update(*, silence: Silence, **changes: Any) -> Silence:
    """Change a silence that has not expired yet."""
    silence = Silence.objects.select_for_update().get(pk=silence.pk)
    now = timezone.now()
    if silence_status(silence.starts_at, silence.ends_at, now) is SilenceStatus.EXPIRED:
        raise Conflict("The silence has expired; create a new one instead.")
    for name, value in changes.items():
        setattr(silence, name, value)
    _check_silence(silence, now)
    silence.save()
    return silence


@transaction.atomic
def silence_expire(*, silence: Silence) -> Silence:
    """End a silence now; one that had not started yet ends before it starts."""
    now = timezone.now()
    status = silence_status(silence.starts_at, silence.ends_at, now)
    if status is SilenceStatus.EXPIRED:
        raise Conflict("The silence has already expired.")
    changes = {"ends_at": now}
    if status is SilenceStatus.PENDING:
        changes["starts_at"] = now
    old_end = silence.ends_at
    Silence.objects.filter(pk=silence.pk).update(**changes, updated_at=now)
    for name, value in changes.items():
        setattr(silence, name, value)
    audit.record("expire", silence, changes={"ends_at": [old_end.isoformat(), now.isoformat()]})
    return silence
