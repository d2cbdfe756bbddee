"""MOC's Redis clients: one connection pool per process for each use, made on first use and reused.

A client made from a URL on every call builds a new pool and a new connection each time (a TCP
handshake on every placement decision, every refused request). Here a call costs a dictionary
look-up: the client is a light wrapper around this process's pool for REDIS_URL, thread-safe,
and reset by redis-py in a forked child. Closing such a client leaves the pool open.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_pools: dict[tuple[str, float, float], redis.ConnectionPool] = {}
_lock = threading.Lock()


def _pool(url: str, *, timeout: float, connect_timeout: float) -> redis.ConnectionPool:
    key = (url, timeout, connect_timeout)
    pool = _pools.get(key)
    if pool is None:
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = redis.ConnectionPool.from_url(
                    url,
                    socket_timeout=timeout,
                    socket_connect_timeout=connect_timeout,
                    health_check_interval=30,
                )
    return pool


def redis_client(timeout: float = 2.0) -> redis.Redis:
    """A client whose commands give up after `timeout` seconds: heartbeats, locks, telemetry, checks."""
    return redis.Redis(connection_pool=_pool(settings.REDIS_URL, timeout=timeout, connect_timeout=timeout))


def shared_redis() -> redis.Redis:
    """The client of inference requests and their answers. A reply stalls for at most 10 s, so
    blocking reads (BLPOP) must wait less than that per call."""
    return redis.Redis(connection_pool=_pool(settings.REDIS_URL, timeout=10.0, connect_timeout=2.0))
