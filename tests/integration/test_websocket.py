"""Websockets through a real uvicorn process running moc_site.asgi, with the Redis channel layer."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from apps.core import events
from apps.fleet.consumers import CLOSE_BAD_REQUEST
from tests.integration.conftest import worker_env
from tests.procs import Process, free_port, python, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _ws_url(base: str, path: str = "/ws/activity/") -> str:
    return base.replace("http://", "ws://") + path


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_anonymous_users_cannot_open_the_activity_socket(asgi_server):
    with pytest.raises(InvalidStatus) as refused:
        connect(_ws_url(asgi_server), origin="http://127.0.0.1", open_timeout=10)

    assert refused.value.response.status_code == 403


def test_a_logged_in_user_receives_published_activity(asgi_server, viewer):
    headers = {"Cookie": _session_cookie(viewer)}
    with connect(
        _ws_url(asgi_server), origin="http://127.0.0.1", additional_headers=headers, open_timeout=10
    ) as ws:
        events.publish(events.ACTIVITY_GROUP, "activity.event", {"id": 1, "action": "create", "actor": "x"})
        message = json.loads(ws.recv(timeout=5))

    assert message == {"type": "activity.event", "payload": {"id": 1, "action": "create", "actor": "x"}}


def test_a_socket_from_a_foreign_origin_is_refused(asgi_server, viewer):
    headers = {"Cookie": _session_cookie(viewer)}
    with pytest.raises(InvalidStatus) as refused:
        connect(
            _ws_url(asgi_server), origin="http://evil.example", additional_headers=headers, open_timeout=10
        )

    assert refused.value.response.status_code == 403


def test_a_subscription_that_is_not_device_ids_closes_with_4400(asgi_server, viewer):
    headers = {"Cookie": _session_cookie(viewer)}
    url = _ws_url(asgi_server, "/ws/telemetry/?devices=gpu0")
    with (
        connect(url, origin="http://127.0.0.1", additional_headers=headers, open_timeout=10) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=5)

    assert closed.value.rcvd.code == CLOSE_BAD_REQUEST


def test_refused_handshakes_log_nothing_when_the_channel_layer_is_away(redis_server, tmp_path):
    # Nothing listens where this uvicorn's channel layer points.
    port = free_port()
    env = worker_env(redis_server, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    args = [python(), "-m", "uvicorn", "moc_site.asgi:application", "--port", str(port), "--lifespan", "off"]
    server = Process(args, env, tmp_path / "uvicorn.log")
    server.start()
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200, 60, "uvicorn"
        )
        for path in ("/ws/activity/", "/ws/telemetry/"):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"ws://127.0.0.1:{port}{path}", origin="http://127.0.0.1", open_timeout=10)
            assert refused.value.response.status_code == 403
        time.sleep(1)  # what a consumer left running would log by now
    finally:
        server.stop()

    assert "Traceback" not in server.output()
