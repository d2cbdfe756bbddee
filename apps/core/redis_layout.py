"""How MOC uses one Redis URL: Django cache, channel layer, Celery broker and results.

Settings build these from REDIS_URL; the test suite rebuilds them for the redis-server it
starts, so both go through the same code.
"""

from __future__ import annotations

from typing import Any


def caches_for(url: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "moc",
        }
    }


def channel_layers_for(url: str, max_connections: int) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 caps the async pool at 100 connections unless told otherwise,
                # and websocket handshakes past that fail.
                "hosts": [{"address": url, "max_connections": max_connections}],
                "prefix": "moc:ws",
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
