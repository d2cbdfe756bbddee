"""Writes to alerts by people: acknowledging, and silences."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.alerts import evaluating, signals
from apps.alerts.domain.matchers import MatchOp, SilenceStatus, silence_status
from apps.alerts.models import Alert, Silence
from apps.core import audit
from apps.core.domain.errors import Conflict


def _alert_locked_open(alert: Alert, doing: str) -> Alert:
    locked = Alert.objects.select_for_update().select_related("rule").get(pk=alert.pk)
    if not locked.is_open:
        raise Conflict(f"The alert is {locked.state}; only pending or firing alerts can be {doing}.")
    return locked


def _ack_state(alert: Alert) -> dict[str, Any]:
    who = alert.acknowledged_by.get_username() if alert.acknowledged_by else None
    expires = alert.ack_expires_at.isoformat() if alert.ack_expires_at else None
    return {"acknowledged_by": who, "ack_comment": alert.ack_comment, "ack_expires_at": expires}


def _ack_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [before[k], after[k]] for k in after if before[k] != after[k]}


@transaction.atomic
def alert_acknowledge(
    *,
    alert: Alert,
    user: AbstractBaseUser,
    comment: str = "",
    expires_at: dt.datetime | None = None,
) -> Alert:
    """Say that `user` is handling an open alert: its repeats are muted until it resolves or
    `expires_at` passes. Acknowledging again (anyone) replaces who, when, the comment and the expiry."""
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationError({"expires_at": ["must be in the future"]})
    alert = _alert_locked_open(alert, "acknowledged")
    before = _ack_state(alert)
    Alert.objects.filter(pk=alert.pk).update(
        acknowledged_by=user,
        acknowledged_at=now,
        ack_comment=comment,
        ack_expires_at=expires_at,
        updated_at=now,
    )
    alert.refresh_from_db()
    audit.record("acknowledge", alert, changes=_ack_changes(before, _ack_state(alert)))
    signals.alert_changed.send(sender=Alert, alert=alert)
    return alert


@transaction.atomic
def alert_unacknowledge(*, alert: Alert, user: AbstractBaseUser) -> Alert:
    """Take back an open alert's acknowledgement, so its repeats notify again. A resolved
    alert keeps its acknowledgement as the record of who handled it."""
    alert = _alert_locked_open(alert, "unacknowledged")
    if alert.acknowledged_at is None:
        return alert
    before = _ack_state(alert)
    now = timezone.now()
    Alert.objects.filter(pk=alert.pk).update(
        acknowledged_by=None, acknowledged_at=None, ack_comment="", ack_expires_at=None, updated_at=now
    )
    alert.refresh_from_db()
    audit.record("unacknowledge", alert, changes=_ack_changes(before, _ack_state(alert)))
    signals.alert_changed.send(sender=Alert, alert=alert)
    return alert


def alert_matchers(alert: Alert) -> list[dict[str, str]]:
    """Equality matchers on the alert's labels, except severity: a silence made from an alert
    still mutes it if the rule's severity is changed."""
    return [
        {"label": name, "op": MatchOp.EQ.value, "value": value}
        for name, value in sorted(alert.labels.items())
        if name != "severity"
    ]


@transaction.atomic
def silence_from_alert(
    *,
    alert: Alert,
    user: AbstractBaseUser | None,
    ends_at: dt.datetime,
    comment: str,
    expire_on_resolve: bool = True,
) -> Silence:
    """A silence from now to `ends_at` matching exactly this alert's labels (severity aside)."""
    return silence_create(
        created_by=user,
        matchers=alert_matchers(alert),
        ends_at=ends_at,
        comment=comment,
        alert=alert,
        expire_on_resolve=expire_on_resolve,
    )


def _check_silence(silence: Silence, now: dt.datetime) -> None:
    silence.full_clean(exclude=["created_by"])
    if silence.expire_on_resolve and silence.alert_id is None:
        raise ValidationError({"expire_on_resolve": ["needs the alert whose resolving ends the silence"]})
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
    alert: Alert | None = None,
    expire_on_resolve: bool = False,
) -> Silence:
    """A silence from `starts_at` (default now) to `ends_at`; made from `alert`, it can end
    when that alert resolves (`expire_on_resolve`)."""
    now = timezone.now()
    if expire_on_resolve and alert is not None and not alert.is_open:
        raise ValidationError({"expire_on_resolve": [f"the alert has already {alert.state}"]})
    silence = Silence(
        matchers=matchers,
        starts_at=starts_at or now,
        ends_at=ends_at,
        comment=comment,
        created_by=created_by,
        alert=alert,
        expire_on_resolve=expire_on_resolve,
    )
    _check_silence(silence, now)
    silence.save()
    evaluating.mutes_refresh(now=now)
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
    evaluating.mutes_refresh(now=now)
    return silence


@transaction.atomic
def silence_expire(*, silence: Silence) -> Silence:
    """End a silence now; one that had not started yet ends before it starts."""
    now = timezone.now()
    if silence_status(silence.starts_at, silence.ends_at, now) is SilenceStatus.EXPIRED:
        raise Conflict("The silence has already expired.")
    evaluating.silence_end(silence=silence, now=now)
    evaluating.mutes_refresh(now=now)
    return silence
