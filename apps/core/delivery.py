"""Delivery accounting for Celery tasks, so a task that kills its worker cannot loop forever.

Every MOC task runs through `DurableTask`. Before the body runs, the delivery row for the
task id is created or bumped in the database. With acks_late and reject_on_worker_lost a
message whose worker died is delivered again; the row is then still RUNNING, which is how
a lost delivery is told apart from a retry. Past MOC_TASK_MAX_DELIVERIES such deliveries
the task is POISONED: acknowledged without running, `on_poisoned` called, and an error
logged for operators (the row is visible in the admin and the API).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Retry
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.domain.states import DELIVERY, IN_HAND, DeliveryState
from apps.core.models import TaskDelivery

log = logging.getLogger(__name__)


@transaction.atomic
def delivery_begin(*, task_id: str, task_name: str, queue: str, worker: str, args: Any, kwargs: Any) -> bool:
    """Count this delivery; False when the task is poisoned and must not run."""
    now = timezone.now()
    row, created = TaskDelivery.objects.select_for_update().get_or_create(
        task_id=task_id,
        defaults={
            "task_name": task_name,
            "queue": queue,
            "worker": worker,
            "args": list(args),
            "kwargs": dict(kwargs),
            "deliveries": 1,
            "last_delivered_at": now,
        },
    )
    if created:
        return True
    if row.state == DeliveryState.POISONED:
        return False
    if row.state in DELIVERY.terminal:
        # The broker handed out a message that already finished (a visibility-timeout
        # redelivery racing the ack): the work is done, do not do it again.
        log.warning("task %s [%s] delivered again after it %s; skipped", task_name, task_id, row.state)
        return False
    lost = row.state == DeliveryState.RUNNING
    row.deliveries += 1
    row.lost_deliveries += int(lost)
    row.worker, row.queue, row.last_delivered_at = worker, queue, now
    if row.lost_deliveries >= settings.MOC_TASK_MAX_DELIVERIES:
        DELIVERY.check(row.state, DeliveryState.POISONED)
        row.state = DeliveryState.POISONED
        row.error = (
            f"poisoned: its worker died {row.lost_deliveries} times running it "
            f"(limit {settings.MOC_TASK_MAX_DELIVERIES}); it is not run again"
        )
        row.finished_at = now
        row.save()
        return False
    DELIVERY.check(row.state, DeliveryState.RUNNING)
    row.state = DeliveryState.RUNNING
    row.save()
    return True


def deliveries_interrupt(*, task_ids: list[str]) -> int:
    """Mark tasks a shutting-down worker still holds, so their redelivery is not taken for a crash."""
    return TaskDelivery.objects.filter(task_id__in=task_ids, state=DeliveryState.RUNNING).update(
        state=DeliveryState.INTERRUPTED
    )


def delivery_finish(*, task_id: str, state: DeliveryState, error: str = "") -> None:
    TaskDelivery.objects.filter(task_id=task_id, state__in=DELIVERY.sources(state) & IN_HAND).update(
        state=state,
        error=error[:4000],
        finished_at=timezone.now() if state != DeliveryState.RETRYING else None,
    )


class DurableTask(Task):
    """Base class of every MOC task: counts deliveries and refuses poisoned messages."""

    acks_late = True
    reject_on_worker_lost = True

    def on_poisoned(self, *args: Any, **kwargs: Any) -> None:
        """Called instead of the body when the message is poisoned; tasks that own work rows mark them."""

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        durable = bool(request.id) and not (request.called_directly or request.is_eager)
        if durable:
            # Recorded before the retry message exists: a worker that starts it at once must
            # find a retry, not a lost delivery, and this attempt must not overwrite its state.
            delivery_finish(task_id=request.id, state=DeliveryState.RETRYING)
        try:
            return super().retry(*args, **kwargs)
        except Retry:
            raise
        except BaseException:
            if durable:  # no retry was sent (max_retries reached): this attempt is still running
                TaskDelivery.objects.filter(task_id=request.id, state=DeliveryState.RETRYING).update(
                    state=DeliveryState.RUNNING
                )
            raise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.is_eager or not request.id:
            return self.run(*args, **kwargs)
        runnable = delivery_begin(
            task_id=request.id,
            task_name=self.name,
            queue=(request.delivery_info or {}).get("routing_key") or "",
            worker=request.hostname or "",
            args=args,
            kwargs=kwargs,
        )
        if not runnable:
            row = TaskDelivery.objects.filter(task_id=request.id).first()
            if row is not None and row.state == DeliveryState.POISONED:
                log.error("task %s [%s] is poisoned: %s", self.name, request.id, row.error)
                self.on_poisoned(*args, **kwargs)
            return None
        try:
            result = self.run(*args, **kwargs)
        except Retry:  # retry() recorded it before sending the message
            raise
        except Exception as exc:
            delivery_finish(
                task_id=request.id, state=DeliveryState.FAILED, error=f"{type(exc).__name__}: {exc}"
            )
            raise
        delivery_finish(task_id=request.id, state=DeliveryState.SUCCEEDED)
        return result
