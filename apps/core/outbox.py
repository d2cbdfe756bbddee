"""The outbox's drainer: sends the task messages that were decided but not sent (the broker was
unreachable when their transaction committed, or their sender died), within seconds of the
broker's return.

It runs as a thread in every worker that consumes the `default` queue, started when the worker
is ready. Several drainers at once are safe on SQLite and PostgreSQL: a message is claimed by a
conditional UPDATE (free, or its holder's lease ran out), which only one of them wins; a sender
that dies holding one loses it when the lease ends (by the database's clock). Messages go out
oldest first; the first send that finds the broker unreachable ends the pass (the rest would fail
too), and the next pass comes after POLL_S, so a dead broker costs one bounded try a second. A
message that failed for another reason (`failed_at`) is not sent again. Writing and sending
messages: apps/core/dispatch.py.

Work that waits on a message here is not late: the reapers ask `waiting_args` / `waiting_task_ids`
before they time out placements or send jobs again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown
from django.db import close_old_connections, connection
from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from apps.core import dispatch, workers
from apps.core.domain.queues import Queue
from apps.core.models import OutboxMessage

log = logging.getLogger(__name__)

POLL_S = 1.0
BATCH = 100


def pending() -> QuerySet[OutboxMessage]:
    """Messages still to be sent: all but those that failed for good."""
    return OutboxMessage.objects.filter(failed_at__isnull=True)


def _free(now: dt.datetime | Now) -> Q:
    return Q(failed_at__isnull=True) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def claim(*, now: dt.datetime | None = None, limit: int = BATCH) -> list[OutboxMessage]:
    """Take up to `limit` of the oldest messages nobody holds, for this caller alone. Leases are
    read and set by the database's clock (`now` only for tests), not each host's own."""
    at: dt.datetime | Now = Now() if now is None else now
    ids = list(OutboxMessage.objects.filter(_free(at)).order_by("pk").values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    holder = dispatch.claimant()
    # Conditional: a row another drainer claimed since the SELECT no longer matches `_free`.
    OutboxMessage.objects.filter(_free(at), pk__in=ids).update(
        claimed_by=holder, claimed_until=at + dispatch.LEASE
    )
    return list(OutboxMessage.objects.filter(pk__in=ids, claimed_by=holder).order_by("pk"))


def drain(*, now: dt.datetime | None = None) -> int:
    """One pass: send what waits, oldest first, until done or the broker refuses; how many left."""
    return dispatch.deliver(claim(now=now))


def waiting_task_ids(name: str) -> QuerySet[OutboxMessage, str]:
    """The task ids of messages named `name` still waiting to be sent, as a subquery."""
    return pending().filter(task_name=name).values_list("task_id", flat=True)


def waiting_args(name: str) -> set[Any]:
    """The first argument (the id of the row it is about) of every message named `name` still
    waiting to be sent."""
    return {args[0] for args in pending().filter(task_name=name).values_list("args", flat=True) if args}


@dataclass(frozen=True, slots=True)
class Waiting:
    count: int  # waiting to be sent
    oldest_at: dt.datetime | None
    last_error: str
    failed: int = 0  # failed for good, kept to be looked at

    def oldest_age_s(self, now: dt.datetime) -> float:
        return (now - self.oldest_at).total_seconds() if self.oldest_at else 0.0


def waiting() -> Waiting:
    """What waits in the outbox: how many messages, since when, the latest send error, and how
    many failed for good."""
    waits = Q(failed_at__isnull=True)
    stats = OutboxMessage.objects.aggregate(
        count=Count("pk", filter=waits),
        oldest=Min("created_at", filter=waits),
        failed=Count("pk", filter=~waits),
    )
    last_error = (
        pending()
        .exclude(last_error="")
        .order_by("-last_attempt_at")
        .values_list("last_error", flat=True)
        .first()
    )
    return Waiting(
        count=stats["count"], oldest_at=stats["oldest"], last_error=last_error or "", failed=stats["failed"]
    )


def _undrained() -> str:
    """Why nothing sends what waits, when no live worker consumes the drainers' queue; else ''."""
    try:
        silence = workers.queue_silence(Queue.DEFAULT.value)
    except redis.RedisError:  # the broker's Redis is away: the last error already says so
        return ""
    if silence is None:
        return ""
    since = dt.datetime.fromtimestamp(silence.since, tz=dt.UTC).isoformat(timespec="seconds")
    return (
        f"nothing drains it: no live worker consumes {silence.queue} "
        f"(last heard: {silence.last.hostname}, silent since {since})"
    )


def describe(now: dt.datetime | None = None) -> str:
    """One line for an operator (/readyz): empty, or what waits since when and why, whether any
    worker is there to send it, and what failed for good."""
    now = timezone.now() if now is None else now
    state = waiting()
    parts = []
    if state.count:
        parts.append(
            f"{state.count} task message(s) waiting to be sent, oldest {state.oldest_age_s(now):.0f} s"
        )
        if state.last_error:
            parts.append(f"last error: {state.last_error}")
        if undrained := _undrained():
            parts.append(undrained)
    if state.failed:
        parts.append(f"{state.failed} failed for good and not sent (see the admin's outbox messages)")
    return "; ".join(parts) or "empty"


_stop = threading.Event()
_threads: dict[str, threading.Thread] = {}


def _loop() -> None:
    while not _stop.is_set():
        try:
            close_old_connections()
            while drain() >= BATCH and not _stop.is_set():
                pass
        except Exception:  # the database is away: try again next pass
            log.exception("outbox drain failed")
        _stop.wait(POLL_S)
    connection.close()


@worker_ready.connect(dispatch_uid="moc-outbox-drainer-start")
def _start_drainer(sender: Any, **kwargs: Any) -> None:
    if Queue.DEFAULT.value not in sender.app.amqp.queues.consume_from:
        return
    _stop.clear()
    thread = threading.Thread(target=_loop, name="moc-outbox-drainer", daemon=True)
    _threads[sender.hostname] = thread
    thread.start()


@worker_shutdown.connect(dispatch_uid="moc-outbox-drainer-stop")
def _stop_drainer(sender: Any, **kwargs: Any) -> None:
    _stop.set()
    thread = _threads.pop(sender.hostname, None)
    if thread is not None:
        thread.join(timeout=5)
