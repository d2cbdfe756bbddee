"""Sending Celery tasks once the transaction that decided them commits: the one way MOC does it.

A task sent before its rows are committed can run before they are visible; one sent inside a
transaction that then rolls back runs for nothing. So every sender queues its message on commit.
After the commit a broker error can no longer undo anything: it is logged (Django's robust
on_commit), never raised into the request that already succeeded, and what was not sent is left
to the owner's own repair: the jobs reconciler sends a job again, the placement reaper fails a
load no worker took, the next scan queues a validation again.

Tasks are named, not imported: a sender needs only the message's name (the contract with the
worker that runs it), so web code never imports worker-side modules to send them work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import current_app
from django.db import transaction


def send(name: str, *, args: tuple[Any, ...] | list[Any] = (), **options: Any) -> None:
    """Send task `name` now (to `queue`, with `task_id`, `expires`, ... as Celery takes them).

    No sender waits on Celery's result backend (answers come back through rows or reply lists),
    so results are ignored unless asked for: a send by name would otherwise subscribe this
    process to the task's result channel, and unsubscribe it again, on every call."""
    options.setdefault("ignore_result", True)
    current_app.send_task(name, args=list(args), **options)


def send_on_commit(
    name: str,
    *,
    args: tuple[Any, ...] | list[Any] = (),
    after: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """Send task `name` once the current transaction commits (at once outside one); then call
    `after` (bookkeeping that the message left, e.g. a job's dispatched_at), unless sending failed."""

    def deliver() -> None:
        send(name, args=args, **options)
        if after is not None:
            after()

    transaction.on_commit(deliver, robust=True)
