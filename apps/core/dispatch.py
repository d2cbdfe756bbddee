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
between sending and deleting, then the drainer) is the same task to apps/core/delivery.py.

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

from celery import current_app
from django.db import transaction
from django.db.models import F
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
            claimed_until=now + LEASE,
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
    """Send messages this caller holds, oldest first, deleting each the broker took; expired ones
    are dropped unsent. At the first refusal the error is recorded on that message and all the
    rest are released for the drainer. How many left the outbox."""
    now = timezone.now()
    gone: list[int] = []
    sent: list[OutboxMessage] = []
    try:
        for index, message in enumerate(messages):
            if message.expires_at is not None and message.expires_at <= now:
                log.warning(
                    "dropped %s: it expired at %s before it could be sent", message, message.expires_at
                )
                gone.append(message.pk)
                continue
            try:
                send(
                    message.task_name,
                    args=message.args,
                    task_id=message.task_id,
                    **({"expires": message.expires_at} if message.expires_at else {}),
                    **message.options,
                )
            except Exception as exc:  # the broker is unreachable: the rows keep the messages
                _release(messages[index:], error=exc, now=now)
                log.warning("could not send %s, kept in the outbox: %s", message, exc)
                break
            gone.append(message.pk)
            sent.append(message)
    finally:
        OutboxMessage.objects.filter(pk__in=gone).delete()
    for message in sent:
        for receiver, error in message_sent.send_robust(
            sender=OutboxMessage, name=message.task_name, task_id=message.task_id, args=message.args
        ):
            if isinstance(error, Exception):
                log.warning("after sending %s, %s failed: %s", message, receiver, error)
    return len(gone)


def _release(messages: Sequence[OutboxMessage], *, error: Exception, now: dt.datetime) -> None:
    """Hand messages back unsent, the error on the first (the one the broker refused)."""
    first, rest = messages[0], [m.pk for m in messages[1:]]
    OutboxMessage.objects.filter(pk=first.pk).update(
        attempts=F("attempts") + 1,
        last_error=f"{type(error).__name__}: {error}"[:2000],
        last_attempt_at=now,
        claimed_by="",
        claimed_until=None,
    )
    OutboxMessage.objects.filter(pk__in=rest).update(claimed_by="", claimed_until=None)
