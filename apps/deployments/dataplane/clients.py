"""The data plane's asynchronous Redis client: one connection pool per process (per event loop,
which an asyncio client is bound to), with shared_redis()'s timeouts, whose 10 s outlast the
direct channel's blocking reads (apps.serving.inference.direct reads in slices of a second)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from django.conf import settings

# Every request in flight holds a connection while it waits for its frames (a BLPOP), so the pool
# bounds the requests one process serves at once: redis-py's asyncio pool has 100 unless told, and
# refuses the 101st at once ("Too many connections"), which answered half of 200 concurrent streams
# 503 (bench/dataplane.py). The deployments' bulkheads are the bound meant; this is Redis's own
# default maxclients.
MAX_CONNECTIONS = 10_000

_clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}


def redis() -> aioredis.Redis:
    """This event loop's client for REDIS_URL."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        for done in [other for other in _clients if other.is_closed()]:
            del _clients[done]
        client = _clients[loop] = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=10.0,
            socket_connect_timeout=2.0,
            health_check_interval=30,
            max_connections=MAX_CONNECTIONS,
        )
    return client
