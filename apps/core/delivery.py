"""Delivery accounting for Celery tasks, so a task that kills its worker cannot loop forever.

Every MOC task runs through `DurableTask`. Before the body runs, the delivery row for the
task id is created or bumped in the database. With acks_late and reject_on_worker_lost a
message whose worker died is delivered again; the row is then still RUNNING, which is how
a lost delivery is told apart from a retry. Past MOC_TASK_MAX_DELIVERIES such deliveries
the task is POISONED: acknowledged without running, `on_poisoned` called, and an error
logged for operators (the row is visible in the admin and the API).

A worker that dies hands nothing back: its messages return only after the broker's visibility
timeout (hours). So `deliveries_reconcile`, run by beat every few seconds, finds rows whose
worker's heartbeat is gone (silent, or heard again as a new run) and marks them LOST, naming the
worker and since when it was silent, and counts the lost delivery then; the redelivery, when it
comes, is not counted a second time. A worker that stopped cleanly handed its tasks back: those
rows are INTERRUPTED, as its shutdown would have marked them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Task
from celery.exceptions import Retry
from celery.signals import worker_shutting_down
from celery.worker import state as worker_state
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.core import workers
from apps.core.domain.states import DELIVERY, IN_HAND, DeliveryState
from apps.core.models import TaskDelivery
from apps.core.redis_clients import redis_client

log = logging.getLogger(__name__)


@transaction.atomic
def delivery_begin(
    *,
    task_id: str,
    task_name: str,
    queue: str,
    worker: str,
    args: Any,
    kwargs: Any,
    redelivered: bool = True,
) -> bool:
    """Count this delivery; False when the task is poisoned, already done, or still running, and
    must not run.

    `redelivered` is the broker's flag: False for a message handed out for the first time. Such a
    delivery of a RUNNING task is the same message sent twice (its outbox row outlived the first
    send, apps/core/dispatch.py), not a crash: while the worker run that took the first copy is
    alive, this copy is skipped without counting a loss. A redelivery is counted, alive or not: a
    prefork pool's child that died puts its message back while the worker's heartbeat goes on.
    Callers that cannot tell pass nothing and get the latter."""
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
    if row.state == DeliveryState.RUNNING and not redelivered:
        try:
            client = redis_client()
            heard = _latest_by_host(workers.queues_heard({row.queue}, client).values()).get(row.worker)
        except redis.RedisError as exc:
            heard = None
            log.warning("task %s [%s]: cannot read worker heartbeats from Redis: %s", task_name, task_id, exc)
        if heard is not None and holder_gone(heard, delivered_at=_delivered_at(row)) is None:
            log.warning(
                "task %s [%s] sent again while worker %s still runs it; this copy skipped",
                task_name,
                task_id,
                row.worker,
            )
            return False
    # A LOST row's loss was counted when deliveries_reconcile found it.
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
    """Mark tasks a shutting-down worker still holds, so their redelivery is not taken for a crash.
    A database that cannot be reached is logged, not raised, as the worker is leaving anyway: the
    redelivery will then count as lost."""
    if not task_ids:
        return 0
    try:
        return TaskDelivery.objects.filter(task_id__in=task_ids, state=DeliveryState.RUNNING).update(
            state=DeliveryState.INTERRUPTED
        )
    except Exception as exc:
        log.warning("could not mark %d running task(s) as interrupted: %s", len(task_ids), exc)
        return 0


@worker_shutting_down.connect(dispatch_uid="moc-deliveries-interrupt")
def _interrupt_active_tasks(sender: Any, **kwargs: Any) -> None:
    """A warm shutdown hands unfinished tasks back to the broker: not a crash, so say so first."""
    deliveries_interrupt(task_ids=[request.id for request in list(worker_state.active_requests)])


def delivery_finish(*, task_id: str, state: DeliveryState, error: str = "") -> None:
    TaskDelivery.objects.filter(task_id=task_id, state__in=DELIVERY.sources(state) & IN_HAND).update(
        state=state,
        error=error[:4000],
        finished_at=timezone.now() if state != DeliveryState.RETRYING else None,
    )


def _at(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, tz=dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class HolderGone:
    """The worker run that took a delivery is gone: died (no goodbye) or stopped cleanly."""

    died: bool
    reason: str


def holder_gone(heard: workers.Heard, *, delivered_at: float) -> HolderGone | None:
    """What became of the run of `heard`'s worker that took a delivery at `delivered_at`, judged from
    the latest beat heard under its hostname; None while that run is alive. A run is told by its
    start: a beat of a run that started after the delivery comes from a restarted worker."""
    name = f"worker {heard.hostname}"
    if heard.started <= delivered_at:  # the beat is from the run that took it
        if heard.stopped:
            return HolderGone(
                died=False,
                reason=f"{name} (pid {heard.pid}) stopped at {_at(heard.seen)} while running it, "
                "which hands it back to the broker",
            )
        if heard.alive:
            return None
        return HolderGone(
            died=True, reason=f"{name} (pid {heard.pid}) silent since {_at(heard.seen)} while running it"
        )
    crash = heard.restart
    if crash is not None and crash.dead_started <= delivered_at < crash.at:
        return HolderGone(
            died=True,
            reason=f"{name} (pid {crash.dead_pid}) died while running it: silent since "
            f"{_at(crash.dead_seen)}, restarted at {_at(crash.at)}",
        )
    # An earlier run than the one last restarted after a crash: its fate is not recorded, but a
    # clean stop would have marked it INTERRUPTED.
    return HolderGone(
        died=True, reason=f"{name} restarted at {_at(heard.started)}, after the run that was running it"
    )


def _delivered_at(row: TaskDelivery) -> float:
    return (row.last_delivered_at or row.first_delivered_at).timestamp()


def _latest_by_host(heard: Iterable[list[workers.Heard]]) -> dict[str, workers.Heard]:
    latest: dict[str, workers.Heard] = {}
    for beats in heard:
        for h in beats:
            if h.hostname not in latest or h.seen > latest[h.hostname].seen:
                latest[h.hostname] = h
    return latest


def deliveries_reconcile() -> dict[str, int]:
    """Mark deliveries whose worker's heartbeat is gone (see the module docstring): RUNNING ones of
    a run that died LOST, counting the loss; of one that stopped cleanly, INTERRUPTED; INTERRUPTED
    ones of a run that died during its shutdown LOST, not counted (a shutdown is not a crash).

    Nothing is judged while the heartbeats cannot be trusted: Redis unreadable, or restarted so
    recently that live workers have not beaten again (workers.heartbeats_settled), nor for a
    worker never heard of (a Redis that lost its data)."""
    rows = list(
        TaskDelivery.objects.filter(state__in=[DeliveryState.RUNNING, DeliveryState.INTERRUPTED])
        .exclude(queue="")
        .exclude(worker="")
    )
    counts = {DeliveryState.LOST.value: 0, DeliveryState.INTERRUPTED.value: 0}
    if not rows:
        return counts
    try:
        client = redis_client()
        by_host = _latest_by_host(workers.queues_heard({row.queue for row in rows}, client).values())
        if not workers.heartbeats_settled(client):
            return counts
    except redis.RedisError as exc:
        log.warning("task deliveries not reconciled: cannot read worker heartbeats from Redis: %s", exc)
        return counts
    for row in rows:
        heard = by_host.get(row.worker)
        gone = None if heard is None else holder_gone(heard, delivered_at=_delivered_at(row))
        if gone is None:
            continue
        if row.state == DeliveryState.RUNNING:
            to = DeliveryState.LOST if gone.died else DeliveryState.INTERRUPTED
        elif gone.died:
            to = DeliveryState.LOST
        else:  # handed back at a clean stop, as its state already says
            continue
        counted = int(row.state == DeliveryState.RUNNING and gone.died)
        error = f"{to}: {gone.reason}"
        if to == DeliveryState.LOST:
            error += "; the broker delivers it again after its visibility timeout"
        # Unless it moved since it was read: a redelivery counts itself.
        moved = TaskDelivery.objects.filter(
            pk=row.pk, state=row.state, last_delivered_at=row.last_delivered_at
        ).update(state=to, lost_deliveries=F("lost_deliveries") + counted, error=error)
        if moved:
            counts[to.value] += 1
            log.warning("task %s [%s] %s: %s", row.task_name, row.task_id, to, gone.reason)
    return counts


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
        delivery_info = request.delivery_info or {}
        runnable = delivery_begin(
            task_id=request.id,
            task_name=self.name,
            queue=delivery_info.get("routing_key") or "",
            worker=request.hostname or "",
            args=args,
            kwargs=kwargs,
            redelivered=bool(delivery_info.get("redelivered")),
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
