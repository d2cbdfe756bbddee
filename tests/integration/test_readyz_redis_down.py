from __future__ import annotations

import pytest
from django.test import Client
from django.test.utils import override_settings

from apps.core import workers
from tests.procs import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_readyz_turns_503_and_names_redis_when_redis_stops(tmp_path, viewer):
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = Client()
    client.force_login(viewer)
    try:
        with override_settings(REDIS_URL=server.url):
            workers.beat(server.client(), "probe@host", ["default"], started=0.0)
            assert client.get("/readyz").status_code == 200

            server.stop()
            response = client.get("/readyz")
    finally:
        server.stop()

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert "Connection" in checks["redis"]["detail"]


def test_the_api_keeps_answering_unthrottled_while_redis_is_down(tmp_path, client_as):
    from apps.core.domain.roles import Role
    from apps.core.redis_layout import caches_for

    server = RedisServer(tmp_path / "redis")
    server.start()
    client = client_as(Role.VIEWER)
    try:
        with override_settings(REDIS_URL=server.url, CACHES=caches_for(server.url)):
            assert client.get("/api/v1/audit-events/").status_code == 200
            server.stop()
            response = client.get("/api/v1/audit-events/")
    finally:
        server.stop()

    assert response.status_code == 200
