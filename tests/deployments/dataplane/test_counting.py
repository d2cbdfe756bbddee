"""The data plane's figures, counted in process and written in batches (counting.py) to the real
Redis: written within the flush period without anybody asking, and never failing anybody when
Redis is away."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.dataplane import counting
from apps.deployments.domain.figures import Outcome
from tests.procs import free_port


def test_requests_counted_in_process_are_written_within_the_flush_period() -> None:
    async def go() -> tuple[int, int]:
        for latency_ms in (10.0, 20.0, 30.0):
            counting.batch().add(release_id=41, outcome=Outcome.OK, latency_ms=latency_ms, tokens_out=2)
        before = figures.totals(redis_client(), [41])[41].requests
        await asyncio.sleep(counting.FLUSH_S * 3)
        return before, figures.totals(redis_client(), [41])[41].requests

    before, after = async_to_sync(go)()

    assert (before, after) == (0, 3)
    assert figures.totals(redis_client(), [41])[41].tokens_out == 6


def test_a_flush_to_an_unreachable_redis_is_logged_and_lost(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reachable = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    async def go() -> None:
        counting.batch().add(release_id=42, outcome=Outcome.OK, latency_ms=5.0)
        await counting.flush()

    async_to_sync(go)()
    settings.REDIS_URL = reachable
    async_to_sync(counting.flush)()  # nothing was kept to pile up

    assert "data plane figures not recorded (" in caplog.text
    assert figures.totals(redis_client(), [42])[42].requests == 0
