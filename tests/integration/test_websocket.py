"""Websockets through a real uvicorn process running moc_site.asgi, with the Redis channel layer."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from apps.core import events

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
