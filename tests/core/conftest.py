"""Fixtures shared by core's tests."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core import workers
from tests.procs import RedisServer, wait_until


@pytest.fixture
def settled(redis_server: RedisServer, settings: Any) -> RedisServer:
    """The session Redis, up for longer than a (shortened) silence: old beats are to be believed."""
    settings.MOC_WORKER_SILENT_AFTER_S = 2
    wait_until(lambda: workers.heartbeats_settled(redis_server.client()), 10, "Redis to be up for 2 s")
    return redis_server
