from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.procs import RedisServer


@pytest.fixture
def broker(redis_server: RedisServer) -> Callable[[str], list[dict[str, Any]]]:
    """The task messages waiting in a Celery queue of the session Redis, oldest first."""

    def messages(queue: str) -> list[dict[str, Any]]:
        raw = redis_server.client().lrange(queue, 0, -1)
        return [json.loads(m) for m in reversed(raw)]

    return messages
