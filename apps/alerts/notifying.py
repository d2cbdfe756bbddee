"""Notifications: each channel's alerts in groups (domain/grouping.py), and a Delivery for each group
that is due, sent by a task once the round commits (delivering.py does the sending).

A channel hears of the alerts of the rules that list it. A grouped channel (webhook, email, log)
tells the notifiable ones: firing, not silenced, not inhibited, not acknowledged (an expired
acknowledgement counts as none); one it told as firing is told resolved when it resolves, muted or
not, and when it vanished (its rule deleted, or the channel taken off the rule: told resolved from
what the group remembers). Event alerts are told at least once (see domain/grouping.py).

Each group remembers in NotificationGroup.sent, per fingerprint, the status it told with the
alert's labels, start, annotations and link (older rows hold the status alone). A group believes
what it told once the Delivery is made; a Delivery that ends failed undoes that
(`delivery_failed`), so the next round tells again. A newer Delivery of a group supersedes the
older ones still pending (never sent after it), and tells again the resolutions they carried.

An Alertmanager channel is not grouped here (Alertmanager groups): every round posts all its firing
alerts, muted ones too, when they changed or MOC_ALERTMANAGER_RESEND_S passed, and a resolved one
once. A muted alert carries the annotation `moc_muted` ("silenced", "inhibited", "acknowledged",
comma-separated) saying why MOC mutes it: an annotation, not a label, because a label is part of
an alert's identity in Alertmanager, and changing it would resolve the alert there and fire a new
one. Routing and muting there is Alertmanager's own (its silences and inhibit rules); leaving a
muted alert out instead would let Alertmanager time it out as resolved while it still fires.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from apps.alerts.domain import grouping as g
from apps.alerts.domain.channels import ChannelKind
from apps.alerts.domain.delivery import DeliveryStatus
from apps.alerts.domain.rules import RuleKind
from apps.alerts.domain.states import AlertState, ack_in_force
from apps.alerts.domain.templates import TemplateRefused, render_annotations
from apps.alerts.domain.webhook import NotifiedAlert, rfc3339
from apps.alerts.models import Alert, Delivery, NotificationChannel, NotificationGroup
from apps.alerts.senders.registry import sender
from apps.core.dispatch import send_on_commit

log = logging.getLogger(__name__)

DELIVERY_SEND = "apps.alerts.tasks.delivery_send"
ALERTMANAGER_KEY = "alertmanager"
MUTED_ANNOTATION = "moc_muted"

# What a group remembers of one alert (NotificationGroup.sent's values).
Memory = dict[str, Any]


def mute_reasons(alert: Alert, now: dt.datetime) -> list[str]:
    """Why MOC mutes `alert` at `now`: silenced, inhibited, acknowledged (an expired
    acknowledgement is none)."""
    reasons = [name for name in ("silenced", "inhibited") if getattr(alert, name)]
    if ack_in_force(alert.acknowledged_at, alert.ack_expires_at, now):
        reasons.append("acknowledged")
    return reasons


def notifiable(alert: Alert, now: dt.datetime) -> bool:
    """Firing, and neither silenced, inhibited nor acknowledged (as of the round's `now`)."""
    return alert.state == AlertState.FIRING and not mute_reasons(alert, now)


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
    """One notification round over every enabled channel; how many deliveries it made. A channel
    whose round fails is logged and rolled back; the others go on."""
    made = 0
    for channel in NotificationChannel.objects.filter(enabled=True):
        try:
            with transaction.atomic():
                if channel.kind == ChannelKind.ALERTMANAGER:
                    made += _forward(channel, now=now)
                else:
                    made += _notify_groups(channel, now=now)
        except Exception:
            log.exception("alerts: the notification round of channel %s failed", channel)
    return made


# What groups remember


def _memory(sent: Mapping[str, Any]) -> dict[str, Memory]:
    """A group's `sent` as fingerprint -> memory; an older row's bare status reads as {"status"}."""
    return {fp: dict(v) if isinstance(v, dict) else {"status": str(v)} for fp, v in sent.items()}


def _recall(fp: str, memory: Memory, *, now: dt.datetime) -> NotifiedAlert | None:
    """A vanished alert told resolved from what its group remembers (None: it remembers too little)."""
    if not memory.get("labels") or not memory.get("starts_at"):
        return None
    return NotifiedAlert(
        status=g.RESOLVED,
        labels=memory["labels"],
        annotations=memory.get("annotations") or {},
        starts_at=dt.datetime.fromisoformat(memory["starts_at"]),
        ends_at=now,
        generator_url=memory.get("url", ""),
        fingerprint=fp,
    )


def _remembered(told: NotifiedAlert, status: str, **extra: str) -> Memory:
    return {
        "status": status,
        "labels": dict(told.labels),
        "starts_at": rfc3339(told.starts_at),
        "annotations": dict(told.annotations),
        "url": told.generator_url,
        **extra,
    }


def _remember(
    statuses: Mapping[str, str], old: Mapping[str, Memory], told: Mapping[str, NotifiedAlert]
) -> dict[str, Memory]:
    """The group's new `sent`: each status with what is known of its alert (as just told, else as
    remembered)."""
    out: dict[str, Memory] = {}
    for fp, status in statuses.items():
        if fp in told:
            out[fp] = _remembered(told[fp], status)
        else:
            out[fp] = {**old.get(fp, {}), "status": status}
    return out


def _statuses(memory: Mapping[str, Memory], status: str) -> set[str]:
    return {fp for fp, m in memory.items() if m.get("status") == status}


def _unconfirmed(channel: NotificationChannel) -> dict[str, set[str]]:
    """Group key -> the fingerprints of its deliveries still being sent."""
    out: dict[str, set[str]] = {}
    pending = Delivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING, test=False)
    for key, fps in pending.values_list("group_key", "fingerprints"):
        out.setdefault(key, set()).update(fps or ())
    return out


def _alerts(channel: NotificationChannel, wanted: Iterable[str], now: dt.datetime) -> list[Alert]:
    """The channel's firing alerts, the resolved ones among `wanted` (the latest of each
    fingerprint), and the event alerts this round resolved (one may resolve before any round saw
    it firing), in one query."""
    resolved = Q(state=AlertState.RESOLVED) & (
        Q(fingerprint__in=set(wanted)) | Q(resolved_at=now, rule__kind=RuleKind.EVENT)
    )
    rows = (
        Alert.objects.filter(Q(state=AlertState.FIRING) | resolved, rule__channels=channel)
        .select_related("rule")
        .order_by("fingerprint", "-resolved_at", "-id")
        .distinct()
    )
    firing = {a.fingerprint: a for a in rows if a.state == AlertState.FIRING}
    ended: dict[str, Alert] = {}
    for a in rows:
        if a.state == AlertState.RESOLVED and a.fingerprint not in firing:
            ended.setdefault(a.fingerprint, a)
    return [*firing.values(), *ended.values()]


def _is_event(alert: Alert) -> bool:
    return alert.rule.kind == RuleKind.EVENT


def _group_alert(alert: Alert, now: dt.datetime) -> g.GroupAlert:
    status = g.FIRING if alert.state == AlertState.FIRING else g.RESOLVED
    event_at = (alert.fired_at or alert.started_at) if _is_event(alert) else None
    muted = bool(mute_reasons(alert, alert.resolved_at or now))
    return g.GroupAlert(alert.fingerprint, alert.labels, status, muted=muted, event_at=event_at)


# Grouped channels


def _notify_groups(channel: NotificationChannel, *, now: dt.datetime) -> int:
    rows = {row.key: row for row in NotificationGroup.objects.select_for_update().filter(channel=channel)}
    memories = {key: _memory(row.sent) for key, row in rows.items()}
    unconfirmed = _unconfirmed(channel)
    wanted = {fp for m in memories.values() for fp in _statuses(m, g.FIRING) | _statuses(m, g.PENDING)}
    wanted |= {fp for fps in unconfirmed.values() for fp in fps}
    alerts = {a.fingerprint: a for a in _alerts(channel, wanted, now)}
    # [] groups every alert together, as in Alertmanager; ["..."] sends each on its own.
    split = g.split((_group_alert(a, now) for a in alerts.values()), channel.group_by)
    recalled: dict[str, NotifiedAlert] = {}
    for key, memory in memories.items():
        for fp in _statuses(memory, g.FIRING) - alerts.keys():
            if (told := _recall(fp, memory[fp], now=now)) is not None:
                recalled[fp] = told
                labels = rows[key].labels or g.group_labels(told.labels, channel.group_by)
                split.setdefault(key, (labels, []))[1].append(g.GroupAlert(fp, told.labels, g.RESOLVED))
    timing = g.Timing(
        group_wait_s=channel.group_wait_s,
        group_interval_s=channel.group_interval_s,
        repeat_interval_s=channel.repeat_interval_s,
        send_resolved=channel.send_resolved,
    )
    made = 0
    for key in sorted(split.keys() | rows.keys()):
        labels, group_alerts = split.get(key, (rows[key].labels if key in rows else {}, []))
        row = rows.get(key)
        memory = memories.get(key, {})
        state = None
        if row is not None:
            statuses = {fp: str(m.get("status", "")) for fp, m in memory.items()}
            state = g.GroupState(row.first_seen_at, row.last_sent_at, statuses)
        plan = g.plan(group_alerts, state, timing, now, unconfirmed=frozenset(unconfirmed.get(key, ())))
        if plan.drop:
            if row is not None:
                row.delete()
            continue
        if row is None:
            row, _ = NotificationGroup.objects.get_or_create(
                channel=channel, key=key, defaults={"labels": labels, "first_seen_at": now}
            )
        told: dict[str, NotifiedAlert] = {}
        for a in plan.alerts:
            told[a.fingerprint] = (
                notified(alerts[a.fingerprint], status=a.status)
                if a.fingerprint in alerts
                else replace(recalled[a.fingerprint], status=a.status)
            )
        fields = ["sent"]
        if plan.due:
            delivery_create(channel, list(told.values()), labels or row.labels, key=key, now=now)
            row.last_sent_at = now
            fields.append("last_sent_at")
            made += 1
        else:  # remembered alerts seen for the first time (pending events)
            told = {fp: notified(a) for fp, a in alerts.items() if fp in plan.sent and fp not in memory}
        sent = _remember(plan.sent, memory, told)
        if plan.due or sent != row.sent:
            row.sent = sent
            row.save(update_fields=fields)
    return made


# Alertmanager


def _forward(channel: NotificationChannel, *, now: dt.datetime) -> int:
    """An Alertmanager channel's round: post when the firing set (or why MOC mutes one) changed,
    something resolved, or MOC_ALERTMANAGER_RESEND_S passed since the last post."""
    row = NotificationGroup.objects.select_for_update().filter(channel=channel, key=ALERTMANAGER_KEY).first()
    memory = _memory(row.sent) if row else {}
    told_firing = _statuses(memory, g.FIRING)
    unconfirmed = _unconfirmed(channel).get(ALERTMANAGER_KEY, set())
    alerts = _alerts(channel, told_firing | unconfirmed, now)
    firing = [a for a in alerts if a.state == AlertState.FIRING]
    ended = [a for a in alerts if a.state == AlertState.RESOLVED]
    resolved = [a for a in ended if a.fingerprint in told_firing]
    retold = [a for a in ended if a.fingerprint in unconfirmed and a.fingerprint not in told_firing]
    # An event alert that resolved before it was ever posted is posted firing now, resolved next.
    caught_up = [
        a
        for a in ended
        if a.fingerprint not in told_firing | unconfirmed and _is_event(a) and not mute_reasons(a, now)
    ]
    present = {a.fingerprint for a in alerts}
    vanished = [t for fp in sorted(told_firing - present) if (t := _recall(fp, memory[fp], now=now))]
    # fingerprint -> why MOC mutes it ("" for none), for each alert posted as firing
    posting = {a.fingerprint: ",".join(mute_reasons(a, now)) for a in firing}
    posting |= dict.fromkeys((a.fingerprint for a in caught_up), "")
    changed = (
        posting != {fp: memory[fp].get("muted", "") for fp in told_firing} or bool(resolved) or bool(vanished)
    )
    resend = (
        row is None
        or row.last_sent_at is None
        or ((now - row.last_sent_at).total_seconds() >= settings.MOC_ALERTMANAGER_RESEND_S)
    )
    if not posting and not resolved and not vanished:
        if row is not None:
            row.delete()
        return 0
    if not (changed or resend):
        return 0
    posted = [_muted(notified(a, status=g.FIRING), posting[a.fingerprint]) for a in [*firing, *caught_up]]
    told = posted + [notified(a, status=g.RESOLVED) for a in [*resolved, *retold]] + vanished
    delivery_create(channel, told, {}, key=ALERTMANAGER_KEY, now=now)
    sent = {t.fingerprint: _remembered(t, g.FIRING, muted=posting[t.fingerprint]) for t in posted}
    row, _ = NotificationGroup.objects.get_or_create(
        channel=channel, key=ALERTMANAGER_KEY, defaults={"first_seen_at": now}
    )
    row.last_sent_at, row.sent = now, sent
    row.save(update_fields=["last_sent_at", "sent"])
    return 1


def _muted(told: NotifiedAlert, reasons: str) -> NotifiedAlert:
    if not reasons:
        return told
    return replace(told, annotations={**told.annotations, MUTED_ANNOTATION: reasons})


# A delivery that failed


def delivery_failed(delivery: Delivery, *, now: dt.datetime) -> None:
    """`delivery` ended failed: its group no longer believes it told what it carried, so the next
    round tells its group again (at once: the group counts as never notified) — the alerts it
    told resolved as resolutions still to tell. Nothing to undo for a test, or when a newer
    delivery of the group was made since (it superseded this one and told it again)."""
    if delivery.test:
        return
    newer = Delivery.objects.filter(
        channel_id=delivery.channel_id, group_key=delivery.group_key, pk__gt=delivery.pk
    )
    with transaction.atomic():
        if newer.exists():
            return
        row, _ = NotificationGroup.objects.select_for_update().get_or_create(
            channel_id=delivery.channel_id, key=delivery.group_key, defaults={"first_seen_at": now}
        )
        memory = _memory(row.sent)
        for fp in delivery.fingerprints or ():
            if memory.get(fp, {}).get("status") != g.FIRING:
                memory[fp] = {**memory.get(fp, {}), "status": g.FIRING}
        row.sent, row.last_sent_at = memory, None
        row.save(update_fields=["sent", "last_sent_at"])


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
    if not test:
        # Never sent after a newer notification of its group (which tells again what it carried).
        # One a worker is sending now is left to finish, or a receiver that got it would be shown
        # it "failed": claimed (its lease runs) with no failed attempt behind it (which leaves an
        # error; a retry waiting for its time has one, and is superseded).
        Delivery.objects.filter(
            channel=channel, group_key=key, status=DeliveryStatus.PENDING, test=False, pk__lt=delivery.pk
        ).exclude(attempts__gt=0, next_attempt_at__gt=now, error="").update(
            status=DeliveryStatus.FAILED, error=f"superseded by delivery {delivery.pk}", next_attempt_at=None
        )
    if delivery.status == DeliveryStatus.PENDING and not test:
        send_on_commit(DELIVERY_SEND, args=(delivery.pk,))
    return delivery
