"""Sending Celery tasks once the transaction that decided them commits: the one way MOC does it.

A task sent before its rows are committed can run before they are visible; one sent inside a
transaction that then rolls back runs for nothing; one sent after the commit is lost if the broker
is down then or the process dies first. So a sender writes the message into the outbox
(`OutboxMessage`) in its own transaction: the message exists exactly when the rows that decided
it committed. Right after the commit this process sends it and deletes the row, as fast as a plain
send. If the broker cannot take it, the row stays (with the error) and the default workers'
drainer (apps/core/outbox.py) sends it within seconds of the broker's return. A broker error never
reaches the request that already succeeded: its work is accepted and will be sent.

Every message gets its task id when it is decided, so a message sent twice (a sender that died
between sending and deleting, then the drainer) is the same task to apps/core/delivery.py, which
skips the second copy. Each message's row goes as soon as the broker took it, so at most the one
in hand can be sent twice. Leases are reckoned by the database's clock, the one clock every
sender shares.

Only an unreachable broker keeps a message waiting for the drainer (`BROKER_UNREACHABLE`); a
message the broker refuses for any other reason would be refused again, so it is marked failed
(`failed_at`, with its error) to be looked at, and the messages after it go on.

Tasks are named, not imported: a sender needs only the message's name (the contract with the
worker that runs it), so web code never imports worker-side modules to send them work.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import kombu.exceptions
import redis
from celery import current_app
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now
from django.dispatch import Signal
from django.utils import timezone

from apps.core.models import OutboxMessage

log = logging.getLogger(__name__)

# One reconnect, no more: a sender must not sit for long on a dead broker (the outbox keeps
# the message); Celery's default retries 3 times, each waiting up to the connect timeout.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# How long a sender owns a message it is sending; past it, the drainer may take it over (the
# sender died between the commit and the send).
LEASE = dt.timedelta(seconds=30)
# What an unreachable broker (Redis) raises, through kombu or redis-py: the message is fine and
# will go once it is back. Any other error is about the message itself. redis-py's
# ConnectionError covers a Redis still loading its data after a restart (BusyLoadingError); the
# built-in ConnectionError and TimeoutError are what a raw socket raises.
BROKER_UNREACHABLE: tuple[type[Exception], ...] = (
    kombu.exceptions.OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)

# Sent after the broker took an outbox message (from the request's process or the drainer), with
# `name`, `task_id` and `args`: bookkeeping of higher apps (a job's dispatched_at) hangs on it.
message_sent = Signal()


def send(name: str, *, args: tuple[Any, ...] | list[Any] = (), **options: Any) -> None:
    """Send task `name` now (to `queue`, with `task_id`, `expires`, ... as Celery takes them).

    No sender waits on Celery's result backend (answers come back through rows or reply lists),
    so results are ignored unless asked for: a send by name would otherwise subscribe this
    process to the task's result channel, and unsubscribe it again, on every call."""
    options.setdefault("ignore_result", True)
    options.setdefault("retry", True)
    options.setdefault("retry_policy", PUBLISH_RETRY_POLICY)
    current_app.send_task(name, args=list(args), **options)


def claimant() -> str:
    """Who holds a claimed message: this process, on this host."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:120]


def send_on_commit(name: str, *, args: tuple[Any, ...] | list[Any] = (), **options: Any) -> OutboxMessage:
    """Send task `name` once the current transaction commits (at once outside one), through the
    outbox: the message is stored with the transaction and sent right after it commits, or by the
    drainer once the broker is back. `expires` (seconds, or a datetime) drops it unsent past then."""
    return send_many_on_commit(name, [args], **options)[0]


def send_many_on_commit(
    name: str, args_list: Iterable[tuple[Any, ...] | list[Any]], **options: Any
) -> list[OutboxMessage]:
    """`send_on_commit` for one message per entry of `args_list`, stored in one INSERT."""
    now = timezone.now()
    task_id = options.pop("task_id", None)
    expires = options.pop("expires", None)
    if isinstance(expires, int | float):
        expires = now + dt.timedelta(seconds=expires)
    holder = claimant()
    rows = [
        OutboxMessage(
            task_id=str(task_id or uuid.uuid4()),
            task_name=name,
            args=list(args),
            options=options,
            expires_at=expires,
            claimed_by=holder,
            claimed_until=Now() + LEASE,
        )
        for args in args_list
    ]
    if task_id and len(rows) > 1:
        raise ValueError("one task id cannot name several messages")
    stored = OutboxMessage.objects.bulk_create(rows)
    if stored:
        transaction.on_commit(lambda: deliver(stored), robust=True)
    return stored


def deliver(messages: Sequence[OutboxMessage]) -> int:
    """Send messages this caller holds, oldest first, deleting each as soon as the broker took it;
    expired ones are dropped unsent. At the first sign that the broker is unreachable the error is
    recorded on that message and all the rest are released for the drainer; a message refused for
    another reason is marked failed and the rest go on. How many left the outbox."""
    now = timezone.now()
    gone = 0
    for index, message in enumerate(messages):
        if message.expires_at is not None and message.expires_at <= now:
            log.warning("dropped %s: it expired at %s before it could be sent", message, message.expires_at)
            OutboxMessage.objects.filter(pk=message.pk).delete()
            gone += 1
            continue
        try:
            send(
                message.task_name,
                args=message.args,
                task_id=message.task_id,
                **({"expires": message.expires_at} if message.expires_at else {}),
                **message.options,
            )
        except BROKER_UNREACHABLE as exc:  # the rows keep the messages until it is back
            _release(messages[index:], error=exc)
            log.warning("could not send %s, kept in the outbox: %s", message, exc)
            break
        except Exception as exc:  # the message itself: sending it again would fail again
            _fail(message, error=exc)
            log.error("could not send %s, marked failed and not sent again: %s", message, exc)
            continue
        # Its bookkeeping before its row goes: whoever finds the row gone finds the send recorded.
        _announce(message)
        OutboxMessage.objects.filter(pk=message.pk).delete()
        gone += 1
    return gone


def _announce(message: OutboxMessage) -> None:
    for receiver, error in message_sent.send_robust(
        sender=OutboxMessage, name=message.task_name, task_id=message.task_id, args=message.args
    ):
        if isinstance(error, Exception):
            log.warning("after sending %s, %s failed: %s", message, receiver, error)


def _error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def _fail(message: OutboxMessage, *, error: Exception) -> None:
    OutboxMessage.objects.filter(pk=message.pk).update(
        attempts=F("attempts") + 1,
        last_error=_error_text(error),
        last_attempt_at=Now(),
        failed_at=Now(),
        claimed_by="",
        claimed_until=None,
    )


def _release(messages: Sequence[OutboxMessage], *, error: Exception) -> None:
    """Hand messages back unsent, the error on the first (the one the broker refused)."""
    first, rest = messages[0], [m.pk for m in messages[1:]]
    OutboxMessage.objects.filter(pk=first.pk).update(
        attempts=F("attempts") + 1,
        last_error=_error_text(error),
        last_attempt_at=Now(),
        claimed_by="",
        claimed_until=None,
    )
    OutboxMessage.objects.filter(pk__in=rest).update(claimed_by="", claimed_until=None)
