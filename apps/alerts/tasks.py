"""Celery tasks of alerts, run by beat (moc_site/celery.py): thin wrappers over the modules that
evaluate, raise, notify and deliver."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from redis.exceptions import LockError

from apps.alerts import delivering, evaluating, live, notifying, raising
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, Delivery
from apps.core.delivery import DurableTask
from apps.core.redis_clients import redis_client

log = logging.getLogger(__name__)

EVALUATE_LOCK_KEY = "moc:alerts:evaluate"


def evaluate_lock_ttl_s() -> float:
    """How long a round may hold the lock: a worker that died holding it stops evaluation only this
    long, and a round that runs longer lets the next one start."""
    return max(60.0, 4 * settings.MOC_ALERT_EVAL_S)


@shared_task(base=DurableTask, name="apps.alerts.tasks.alerts_evaluate", ignore_result=True)
def alerts_evaluate() -> dict[str, int] | None:
    """One evaluation round; None when the previous round still runs (its beat is skipped)."""
    lock = redis_client().lock(EVALUATE_LOCK_KEY, timeout=evaluate_lock_ttl_s(), blocking=False)
    if not lock.acquire():
        log.info("alerts: the previous evaluation round still runs; skipping this one")
        return None
    try:
        return evaluation_round(now=timezone.now())
    finally:
        try:
            lock.release()
        except LockError:  # it expired while we ran, and may be another round's now
            log.warning("alerts: an evaluation round outlasted its lock (%ss)", evaluate_lock_ttl_s())


def evaluation_round(*, now: dt.datetime) -> dict[str, int]:
    """Threshold rules, event alerts' resolution, breakers, mute flags, notifications, then the
    bell's count. Each step runs whatever the others did: one that fails is logged and counted in
    "failed", and the rest of the round goes on (each step's own transactions undo its half-writes)."""
    steps: tuple[tuple[str, Callable[[], int | None]], ...] = (
        ("threshold", lambda: evaluating.rules_evaluate(now=now)),
        ("events_resolved", lambda: raising.event_alerts_resolve(now=now)),
        ("breakers", lambda: raising.breakers_check(now=now)),
        ("mutes", lambda: evaluating.mutes_refresh(now=now)),  # again: event alerts just raised count too
        ("deliveries", lambda: notifying.notify(now=now)),
        ("count", live.count_announce),  # reaches the bell even when no alert_changed was sent
    )
    counts: dict[str, int] = {"failed": 0}
    for name, step in steps:
        try:
            done = step()
        except Exception:
            log.exception("alerts: the evaluation round's %s step failed; the round goes on", name)
            counts["failed"] += 1
        else:
            if done is not None:
                counts[name] = done
    return counts


@shared_task(base=DurableTask, name="apps.alerts.tasks.alerts_prune", ignore_result=True)
def alerts_prune() -> dict[str, int]:
    """Forget resolved alerts and deliveries older than MOC_ALERT_RETENTION_DAYS."""
    cutoff = timezone.now() - dt.timedelta(days=settings.MOC_ALERT_RETENTION_DAYS)
    _, alerts = Alert.objects.filter(state=AlertState.RESOLVED, resolved_at__lt=cutoff).delete()
    _, deliveries = Delivery.objects.filter(created_at__lt=cutoff).delete()
    return {
        "alerts": alerts.get(Alert._meta.label, 0),
        "deliveries": deliveries.get(Delivery._meta.label, 0),
    }


@shared_task(base=DurableTask, name=notifying.DELIVERY_SEND, ignore_result=True)
def delivery_send(delivery_id: int) -> str:
    """One attempt at a notification; a retry is sent again with its backoff as the countdown."""
    return delivering.delivery_attempt(delivery_id).status


@shared_task(base=DurableTask, name="apps.alerts.tasks.deliveries_retry_due", ignore_result=True)
def deliveries_retry_due() -> int:
    """Beat's sweep (every 30 s): deliveries whose retry is due, or whose first task was lost."""
    return delivering.deliveries_retry_due(now=timezone.now())
