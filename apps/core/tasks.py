from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from apps.core import selectors
from apps.core.delivery import DurableTask, deliveries_reconcile
from apps.core.domain.states import DELIVERY
from apps.core.models import TaskDelivery

# Finished delivery rows are kept this long for inspection, then pruned.
_KEEP = dt.timedelta(days=7)


@shared_task(base=DurableTask)
def task_deliveries_prune() -> int:
    cutoff = timezone.now() - _KEEP
    deleted, _ = TaskDelivery.objects.filter(state__in=DELIVERY.terminal, finished_at__lt=cutoff).delete()
    return deleted


@shared_task(base=DurableTask, ignore_result=True)
def task_deliveries_reconcile() -> dict[str, int]:
    """Deliveries whose worker's heartbeat is gone: marked lost, not left running for hours."""
    return deliveries_reconcile()


@shared_task(base=DurableTask)
def ping(note: str = "") -> dict:
    """A round trip through the broker and a worker, for health probes and tests."""
    selectors.database_ok()
    return {"pong": True, "note": note, "at": timezone.now().isoformat()}
