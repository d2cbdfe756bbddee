"""Waiting for a sleeping deployment: a request that finds no replica of the stable release loaded
wakes the deployment (apps.deployments.wake, which starts at most one load however many
processes ask) and waits for a replica to answer, up to the deployment's wake_timeout_s.

One wait per deployment per process: concurrent requests await the same task, which re-reads the
deployment's route every POLL_S until its stable side has a loaded replica. A request that goes
away (its client hung up) stops waiting; the shared wait goes on for the others.

The wake itself (a write transaction, the scheduler, on SQLite maybe a wait for the write lock)
runs in a thread of its own, not on the one thread this process's other database work shares
(Channels' thread-sensitive executor: key and route misses, the websockets).
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

from apps.deployments.dataplane import routes
from apps.deployments.dataplane.routes import Route
from apps.deployments.wake import REFUSED_RETRY_S, Waking, wake
from apps.serving.domain.errors import Refusal
from apps.serving.inference.refusals import Refused

# How often a wait re-reads the route: a load takes seconds, a poll a few queries.
POLL_S = 0.2
# How soon to try again after a wait ran out of time: the load goes on meanwhile.
STILL_LOADING_RETRY_S = 5

_waits: dict[int, asyncio.Task[Route]] = {}  # deployment id -> the wait every request shares


async def until_loaded(route: Route) -> Route:
    """The deployment's route once its stable release has a loaded replica, waking it first. Raises
    Refused (503, with Retry-After) when it cannot be woken (the scheduler's reason) or is still
    loading after the deployment's wake_timeout_s."""
    loop = asyncio.get_running_loop()
    task = _waits.get(route.deployment_id)
    if task is None or task.done() or task.get_loop() is not loop:
        task = loop.create_task(_wait(route))
        _waits[route.deployment_id] = task
        task.add_done_callback(lambda done: _forget(route.deployment_id, done))
    # shield: a caller cancelled (gone) does not cancel the wait the others share.
    return await asyncio.shield(task)


def _forget(deployment_id: int, task: asyncio.Task[Route]) -> None:
    if _waits.get(deployment_id) is task:
        del _waits[deployment_id]
    if not task.cancelled():
        task.exception()  # retrieved: a wait nobody awaits any more is not logged as lost


def _wake(deployment_id: int) -> Waking:
    """wake(), in a worker thread of the event loop's executor: with a connection of that thread's
    own, closed once done (no request cycle closes it there)."""
    close_old_connections()
    try:
        return wake(deployment_id)
    finally:
        connection.close()


async def _wait(route: Route) -> Route:
    began = time.monotonic()
    waking = await sync_to_async(_wake, thread_sensitive=False)(route.deployment_id)
    if waking.state == "refused":
        raise Refused(503, waking.reason, Refusal.NOT_LOADED, waking.retry_after_s)
    timeout_s = route.wake_timeout_s
    while True:
        fresh = await routes.route(route.name, fresh=True)
        if fresh is not None and fresh.stable is not None and fresh.stable.targets:
            return fresh
        if fresh is None or fresh.stable is None or not fresh.stable.loading:
            raise Refused(
                503,
                f"deployment {route.name} was woken, but its replicas stopped loading with none loaded; "
                "its page says why",
                Refusal.NOT_LOADED,
                REFUSED_RETRY_S,
            )
        if time.monotonic() - began >= timeout_s:
            raise Refused(
                503,
                f"deployment {route.name} is still loading after {timeout_s} s",
                Refusal.NOT_LOADED,
                STILL_LOADING_RETRY_S,
            )
        await asyncio.sleep(POLL_S)
