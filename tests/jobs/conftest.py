from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from kombu.transport.redis import Channel

from tests.procs import RedisServer


@pytest.fixture
def broker(redis_server: RedisServer) -> Callable[[str], list[dict[str, Any]]]:
    """The task messages waiting in a Celery queue of the session Redis, in the order a worker
    takes them: by priority (Celery's Redis transport keeps a list per priority step), then
    oldest first."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    steps = options.get("priority_steps", Channel.priority_steps)
    sep = options.get("sep", Channel.sep)

    def messages(queue: str) -> list[dict[str, Any]]:
        client = redis_server.client()
        lists = [f"{queue}{sep}{step}" if step else queue for step in steps]
        return [json.loads(m) for name in lists for m in reversed(client.lrange(name, 0, -1))]

    return messages
