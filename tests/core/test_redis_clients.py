"""Redis clients share one pool per process and timeout, against the session's real Redis."""

from __future__ import annotations

from typing import Any

from apps.core.redis_clients import redis_client, shared_redis


def test_clients_with_the_same_timeout_share_one_pool_and_reuse_its_connection(redis_server: Any) -> None:
    pool = redis_client().connection_pool
    before = pool._created_connections

    for _ in range(5):
        redis_client().ping()

    assert redis_client().connection_pool is pool
    assert pool._created_connections <= max(before, 1)  # no handshake per call


def test_a_different_timeout_or_the_inference_client_gets_a_pool_of_its_own(redis_server: Any) -> None:
    assert redis_client(timeout=1.0).connection_pool is not redis_client().connection_pool
    assert shared_redis().connection_pool is shared_redis().connection_pool
    assert shared_redis().connection_pool is not redis_client().connection_pool


def test_closing_a_client_leaves_the_pool_open_for_the_next(redis_server: Any) -> None:
    with redis_client() as client:
        client.ping()

    assert redis_client().ping() is True
    assert redis_client().connection_pool is client.connection_pool
