"""The data plane's request figures, counted off the request path: each answered or refused request
is added to this process's Batch (apps.deployments.figures, pure: no I/O), and one task per process
writes the batch every FLUSH_S in one pipeline, so a request costs Redis nothing for its figures
and a busy process a few commands per release per flush. What is still in the batch when the
process exits is written then, best effort (atexit: uvicorn runs without lifespan events).

The figures' readers tolerate the lag: the canary analysis and the charts read whole 5 s buckets
(figures.complete_span), the rollup whole minutes well after they end.
"""

from __future__ import annotations

import asyncio
import atexit
import logging

import redis

from apps.core import redis_batch
from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.dataplane import clients

FLUSH_S = 0.5

log = logging.getLogger(__name__)

_batch = figures.Batch()
_flusher: asyncio.Task[None] | None = None


def batch() -> figures.Batch:
    """This process's batch, to add a request to (it is written within FLUSH_S)."""
    global _flusher
    loop = asyncio.get_running_loop()
    if _flusher is None or _flusher.done() or _flusher.get_loop() is not loop:
        _flusher = loop.create_task(_flush_every(), name="dataplane-figures")
    return _batch


async def flush() -> None:
    """Write what was counted so far, now: one pipeline. A Redis that cannot be reached loses it
    (logged): figures are never worth failing a request or piling up memory for."""
    commands = _batch.take()
    if not commands:
        return
    try:
        await redis_batch.arun(clients.redis(), commands)
    except redis.RedisError as exc:
        log.warning("data plane figures not recorded (%d commands): %s", len(commands), exc)


async def _flush_every() -> None:
    """Flush every FLUSH_S while requests come; ends once a flush leaves the batch empty."""
    while True:
        await asyncio.sleep(FLUSH_S)
        await flush()
        if not _batch:
            return


@atexit.register
def _flush_at_exit() -> None:
    """Best effort: the last half second's figures, with a synchronous client (no loop is left)."""
    commands = _batch.take()
    if commands:
        try:
            redis_batch.run(redis_client(), commands)
        except redis.RedisError as exc:
            log.warning("data plane figures not recorded at exit (%d commands): %s", len(commands), exc)
