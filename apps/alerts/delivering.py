"""Sending deliveries: one attempt at a time, retried with backoff (domain/delivery.py) until
MOC_ALERT_DELIVERY_ATTEMPTS, then failed; every attempt's answer kept on the Delivery.

An attempt is claimed by a conditional UPDATE (still pending, the attempt count as read, not
waiting for a later retry), which also pushes next_attempt_at past the attempt's timeout: two
workers (the task and the retry beat, or a task delivered twice) never send one attempt twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from apps.alerts.domain import grouping as g
from apps.alerts.domain.delivery import DeliveryStatus, retry_delay_s
from apps.alerts.domain.webhook import NotifiedAlert
from apps.alerts.models import Delivery, NotificationChannel
from apps.alerts.notifying import DELIVERY_SEND, delivery_create, delivery_failed
from apps.alerts.senders import Outcome
from apps.alerts.senders.registry import sender
from apps.core import audit
from apps.core.dispatch import send_many_on_commit, send_on_commit

log = logging.getLogger(__name__)

# A task never picked up (lost with its worker) is sent again after this.
LOST_AFTER = dt.timedelta(minutes=1)
# How long past its timeout an attempt in progress is left to its worker.
CLAIM_SLACK = dt.timedelta(seconds=30)
TEST_LABELS = {"alertname": "MocTestNotification", "severity": "info"}


def _claim(delivery: Delivery, now: dt.datetime) -> bool:
    """Take the next attempt of `delivery`; False when another worker has it or it is not due."""
    lease = dt.timedelta(seconds=settings.MOC_ALERT_DELIVERY_TIMEOUT_S) + CLAIM_SLACK
    claimed = (
        Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(attempts=F("attempts") + 1, next_attempt_at=now + lease, error="")
    )
    return claimed == 1


def delivery_attempt(delivery_id: int) -> Delivery:
    """One attempt at `delivery_id`, if it is pending and due; the Delivery as it is afterwards."""
    delivery = Delivery.objects.select_related("channel").get(pk=delivery_id)
    now = timezone.now()
    if delivery.status != DeliveryStatus.PENDING or not _claim(delivery, now):
        return delivery
    delivery.attempts += 1
    channel = delivery.channel
    try:
        outcome = sender(channel).send(
            channel, delivery.body, timeout_s=settings.MOC_ALERT_DELIVERY_TIMEOUT_S, now=now
        )
    except Exception as exc:  # a sender's bug must not leave the delivery claimed forever
        log.exception("delivery %s to %s", delivery.pk, channel)
        outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
    _record(delivery, outcome, now=timezone.now())
    return delivery


def _record(delivery: Delivery, outcome: Outcome, *, now: dt.datetime) -> None:
    changes: dict[str, Any] = {"response_status": outcome.status}
    if outcome.ok:
        changes |= {
            "status": DeliveryStatus.DELIVERED,
            "delivered_at": now,
            "error": "",
            "next_attempt_at": None,
        }
    elif delivery.attempts >= settings.MOC_ALERT_DELIVERY_ATTEMPTS:
        changes |= {"status": DeliveryStatus.FAILED, "error": outcome.error, "next_attempt_at": None}
    else:
        retry_at = now + dt.timedelta(seconds=retry_delay_s(delivery.attempts))
        changes |= {"error": outcome.error, "next_attempt_at": retry_at}
    # Only the attempt this worker claimed is recorded (the claim is `attempts` as counted).
    Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts).update(
        **changes
    )
    for name, value in changes.items():
        setattr(delivery, name, value)
    if delivery.status == DeliveryStatus.FAILED:
        delivery_failed(delivery, now=now)  # its group tells again next round
    if not outcome.ok:
        log.warning(
            "delivery %s to %s failed (attempt %s): %s",
            delivery.pk,
            delivery.channel,
            delivery.attempts,
            outcome.error,
        )
    if delivery.status == DeliveryStatus.PENDING and not delivery.test:
        countdown = retry_delay_s(delivery.attempts)
        send_on_commit(DELIVERY_SEND, args=(delivery.pk,), countdown=countdown)


def deliveries_retry_due(*, now: dt.datetime) -> int:
    """Send again the pending deliveries whose retry is due, and those whose first task was lost
    (never attempted a minute after they were made); how many."""
    due = Q(next_attempt_at__lte=now) | Q(
        attempts=0, next_attempt_at__isnull=True, created_at__lte=now - LOST_AFTER
    )
    ids = list(
        Delivery.objects.filter(due, status=DeliveryStatus.PENDING, test=False).values_list("pk", flat=True)
    )
    send_many_on_commit(DELIVERY_SEND, [(pk,) for pk in ids])
    return len(ids)


def channel_test(*, channel: NotificationChannel, user: Any) -> Delivery:
    """A test notification to `channel` (a sample firing alert), attempted now; audited."""
    now = timezone.now()
    sample = NotifiedAlert(
        status=g.FIRING,
        labels=TEST_LABELS,
        annotations={"summary": f"A test notification from MOC to {channel.name}, sent by {user}"},
        starts_at=now,
        ends_at=None,
        generator_url=settings.MOC_PUBLIC_URL.rstrip("/") + "/alerts/",
        fingerprint="0" * 16,
    )
    delivery = delivery_create(
        channel, [sample], {"alertname": TEST_LABELS["alertname"]}, key="test", now=now, test=True
    )
    audit.record("alerts.channel_test", channel, changes={"delivery": [None, delivery.pk]})
    if delivery.status == DeliveryStatus.PENDING:
        delivery = delivery_attempt(delivery.pk)
        if delivery.status == DeliveryStatus.PENDING:  # a test is tried once: the person is waiting
            Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
                status=DeliveryStatus.FAILED, next_attempt_at=None
            )
            delivery.refresh_from_db()
    return delivery
