"""Notifications: each channel's alerts in groups (domain/grouping.py), and a Delivery for each group
that is due, sent by a task once the round commits (delivering.py does the sending).

A channel hears of the alerts of the rules that list it, while they are notifiable: firing, not
silenced, not inhibited, not acknowledged (an expired acknowledgement counts as none). An
Alertmanager channel is not grouped here (Alertmanager groups): every round posts its firing alerts
when they changed or MOC_ALERTMANAGER_RESEND_S passed, and a resolved one once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from apps.alerts.domain import grouping as g
from apps.alerts.domain.channels import ChannelKind
from apps.alerts.domain.delivery import DeliveryStatus
from apps.alerts.domain.states import AlertState, ack_in_force
from apps.alerts.domain.templates import TemplateRefused, render_annotations
from apps.alerts.domain.webhook import NotifiedAlert
from apps.alerts.models import Alert, Delivery, NotificationChannel, NotificationGroup
from apps.alerts.senders.registry import sender
from apps.core.dispatch import send_on_commit

log = logging.getLogger(__name__)

DELIVERY_SEND = "apps.alerts.tasks.delivery_send"
ALERTMANAGER_KEY = "alertmanager"


def notifiable(alert: Alert, now: dt.datetime) -> bool:
    """Firing, and neither silenced, inhibited nor acknowledged (as of the round's `now`)."""
    muted = (
        alert.silenced or alert.inhibited or ack_in_force(alert.acknowledged_at, alert.ack_expires_at, now)
    )
    return alert.state == AlertState.FIRING and not muted


def annotations(alert: Alert) -> dict[str, str]:
    """The alert's filled-in annotations; for an alert saved without them, its rule's texts."""
    if alert.annotations:
        return {str(k): str(v) for k, v in alert.annotations.items()}
    rule = alert.rule
    filled = render_annotations(rule.summary, rule.description, alert.labels, alert.value)
    return filled or {"summary": f"{rule.name}: {rule.condition}"}


def notified(alert: Alert, *, status: str | None = None) -> NotifiedAlert:
    """What a notification says of `alert` (`status` as the group tells it)."""
    status = status or (g.FIRING if alert.state == AlertState.FIRING else g.RESOLVED)
    return NotifiedAlert(
        status=status,
        labels=alert.labels,
        annotations=annotations(alert),
        # Like Prometheus, an alert starts (for receivers) when it fires.
        starts_at=alert.fired_at or alert.started_at,
        ends_at=alert.resolved_at if status == g.RESOLVED else None,
        generator_url=settings.MOC_PUBLIC_URL.rstrip("/") + alert.get_absolute_url(),
        fingerprint=alert.fingerprint,
        value=alert.value,
    )


def notify(*, now: dt.datetime) -> int:
    """One notification round over every enabled channel; how many deliveries it made."""
    made = 0
    for channel in NotificationChannel.objects.filter(enabled=True):
        with transaction.atomic():
            if channel.kind == ChannelKind.ALERTMANAGER:
                made += _forward(channel, now=now)
            else:
                made += _notify_groups(channel, now=now)
    return made


def _alerts(channel: NotificationChannel, told_firing: Iterable[str]) -> list[Alert]:
    """The channel's firing alerts, and the resolved ones among those it was told were firing
    (the latest of each fingerprint), in one query."""
    wanted = Q(state=AlertState.FIRING) | Q(state=AlertState.RESOLVED, fingerprint__in=set(told_firing))
    rows = (
        Alert.objects.filter(wanted, rule__channels=channel)
        .select_related("rule")
        .order_by("fingerprint", "-resolved_at", "-id")
        .distinct()
    )
    firing = {a.fingerprint: a for a in rows if a.state == AlertState.FIRING}
    resolved: dict[str, Alert] = {}
    for a in rows:
        if a.state == AlertState.RESOLVED and a.fingerprint not in firing:
            resolved.setdefault(a.fingerprint, a)
    return [*firing.values(), *resolved.values()]


def _group_alert(alert: Alert, now: dt.datetime) -> g.GroupAlert | None:
    if alert.state == AlertState.RESOLVED:
        return g.GroupAlert(alert.fingerprint, alert.labels, g.RESOLVED)
    return g.GroupAlert(alert.fingerprint, alert.labels, g.FIRING) if notifiable(alert, now) else None


def _told_firing(groups: Iterable[NotificationGroup]) -> set[str]:
    return {fp for group in groups for fp, status in group.sent.items() if status == g.FIRING}


def _notify_groups(channel: NotificationChannel, *, now: dt.datetime) -> int:
    groups = {
        group.key: group for group in NotificationGroup.objects.select_for_update().filter(channel=channel)
    }
    alerts = {a.fingerprint: a for a in _alerts(channel, _told_firing(groups.values()))}
    members = [ga for a in alerts.values() if (ga := _group_alert(a, now)) is not None]
    # [] groups every alert together, as in Alertmanager; ["..."] sends each on its own.
    split = g.split(members, channel.group_by)
    timing = g.Timing(
        group_wait_s=channel.group_wait_s,
        group_interval_s=channel.group_interval_s,
        repeat_interval_s=channel.repeat_interval_s,
        send_resolved=channel.send_resolved,
    )
    made = 0
    for key in sorted(split.keys() | groups.keys()):
        labels, group_alerts = split.get(key, ({}, []))
        row = groups.get(key)
        state = g.GroupState(row.first_seen_at, row.last_sent_at, row.sent) if row else None
        plan = g.plan(group_alerts, state, timing, now)
        if plan.drop:
            if row is not None:
                row.delete()
            continue
        if row is None:
            row = NotificationGroup.objects.create(channel=channel, key=key, labels=labels, first_seen_at=now)
        if not plan.due:
            continue
        told = [notified(alerts[a.fingerprint], status=a.status) for a in plan.alerts]
        delivery_create(channel, told, row.labels, key=key, now=now)
        row.last_sent_at = now
        row.sent = plan.sent
        row.save(update_fields=["last_sent_at", "sent"])
        made += 1
    return made


def _forward(channel: NotificationChannel, *, now: dt.datetime) -> int:
    """An Alertmanager channel's round: post when the firing set changed, something resolved, or
    MOC_ALERTMANAGER_RESEND_S passed since the last post."""
    row = NotificationGroup.objects.select_for_update().filter(channel=channel, key=ALERTMANAGER_KEY).first()
    sent = row.sent if row else {}
    alerts = _alerts(channel, _told_firing([row] if row else []))
    firing = [a for a in alerts if notifiable(a, now)]
    resolved = [a for a in alerts if a.state == AlertState.RESOLVED]
    firing_now = {a.fingerprint for a in firing}
    changed = firing_now != {fp for fp, s in sent.items() if s == g.FIRING} or bool(resolved)
    resend = (
        row is None
        or row.last_sent_at is None
        or ((now - row.last_sent_at).total_seconds() >= settings.MOC_ALERTMANAGER_RESEND_S)
    )
    if not firing and not resolved:
        if row is not None:
            row.delete()
        return 0
    if not (changed or resend):
        return 0
    told = [notified(a, status=g.FIRING) for a in firing] + [notified(a, status=g.RESOLVED) for a in resolved]
    delivery_create(channel, told, {}, key=ALERTMANAGER_KEY, now=now)
    NotificationGroup.objects.update_or_create(
        channel=channel,
        key=ALERTMANAGER_KEY,
        defaults={"last_sent_at": now, "sent": dict.fromkeys(sorted(firing_now), g.FIRING)},
        create_defaults={
            "first_seen_at": now,
            "last_sent_at": now,
            "sent": dict.fromkeys(sorted(firing_now), g.FIRING),
        },
    )
    return 1


def delivery_create(
    channel: NotificationChannel,
    alerts: list[NotifiedAlert],
    group_labels: dict[str, str],
    *,
    key: str,
    now: dt.datetime,
    test: bool = False,
) -> Delivery:
    """A Delivery of `alerts` to `channel`, sent by a task once this transaction commits (unless
    `test`: the caller attempts it at once). A template that refuses to render makes a failed
    delivery that says why, visible on the channel's page."""
    delivery = Delivery(
        channel=channel,
        group_key=key,
        firing=sum(a.status == g.FIRING for a in alerts),
        resolved=sum(a.status == g.RESOLVED for a in alerts),
        fingerprints=[a.fingerprint for a in alerts],
        test=test,
    )
    try:
        delivery.body = sender(channel).compose(channel, alerts, group_labels, now=now)
    except TemplateRefused as exc:
        delivery.body = ""
        delivery.status = DeliveryStatus.FAILED
        delivery.error = f"the template was refused: {exc}"
        log.warning("channel %s: %s", channel, delivery.error)
    delivery.save()
    if delivery.status == DeliveryStatus.PENDING and not test:
        send_on_commit(DELIVERY_SEND, args=(delivery.pk,))
    return delivery
