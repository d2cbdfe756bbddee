"""The outbox's drainer: sends the task messages that were decided but not sent (the broker was
unreachable when their transaction committed, or their sender died), within seconds of the
broker's return.

It runs as a thread in every worker that consumes the `default` queue, started when the worker
is ready. Several drainers at once are safe on SQLite and PostgreSQL: a message is claimed by a
conditional UPDATE (free, or its holder's lease ran out), which only one of them wins; a sender
that dies holding one loses it when the lease ends. Messages go out oldest first; the first send
that fails ends the pass (the broker is down, the rest would fail too), and the next pass comes
after POLL_S, so a dead broker costs one bounded try a second. Writing and sending messages:
apps/core/dispatch.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.db import close_old_connections, connection
from django.db.models import Min, Q
from django.utils import timezone

from apps.core import dispatch
from apps.core.domain.queues import Queue
from apps.core.models import OutboxMessage

log = logging.getLogger(__name__)

POLL_S = 1.0
BATCH = 100


def _free(now: dt.datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


def claim(*, now: dt.datetime | None = None, limit: int = BATCH) -> list[OutboxMessage]:
    """Take up to `limit` of the oldest messages nobody holds, for this caller alone."""
    now = timezone.now() if now is None else now
    ids = list(OutboxMessage.objects.filter(_free(now)).order_by("pk").values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    holder = dispatch.claimant()
    # Conditional: a row another drainer claimed since the SELECT no longer matches `_free`.
    OutboxMessage.objects.filter(_free(now), pk__in=ids).update(
        claimed_by=holder, claimed_until=now + dispatch.LEASE
    )
    return list(OutboxMessage.objects.filter(claimed_by=holder).order_by("pk"))


def drain(*, now: dt.datetime | None = None) -> int:
    """One pass: send what waits, oldest first, until done or the broker refuses; how many left."""
    return dispatch.deliver(claim(now=now))


@dataclass(frozen=True, slots=True)
class Waiting:
    count: int
    oldest_at: dt.datetime | None
    last_error: str

    def oldest_age_s(self, now: dt.datetime) -> float:
        return (now - self.oldest_at).total_seconds() if self.oldest_at else 0.0


def waiting() -> Waiting:
    """What waits in the outbox: how many messages, since when, and the latest send error."""
    stats = OutboxMessage.objects.aggregate(oldest=Min("created_at"))
    count = OutboxMessage.objects.count()
    last_error = (
        OutboxMessage.objects.exclude(last_error="")
        .order_by("-last_attempt_at")
        .values_list("last_error", flat=True)
        .first()
    )
    return Waiting(count=count, oldest_at=stats["oldest"], last_error=last_error or "")


def describe(now: dt.datetime | None = None) -> str:
    """One line for an operator (/readyz): empty, or what waits since when and why."""
    now = timezone.now() if now is None else now
    state = waiting()
    if not state.count:
        return "empty"
    line = f"{state.count} task message(s) waiting to be sent, oldest {state.oldest_age_s(now):.0f} s"
    return f"{line}; last error: {state.last_error}" if state.last_error else line


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
