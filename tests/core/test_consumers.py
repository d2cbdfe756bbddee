"""The activity websocket, through the real ASGI application and the channels_redis layer.

channels.testing imports daphne (for its live server), which MOC does not install, so the
socket is driven with asgiref's ApplicationCommunicator, as channels' own communicator is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.test import Client

from apps.core import events
from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.domain.roles import Role
from moc_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL_ORIGIN = (b"origin", b"http://127.0.0.1")


class WebsocketCommunicator(ApplicationCommunicator):
    """A websocket client speaking ASGI to the application, like channels.testing's."""

    def __init__(self, app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        scope = {
            "type": "websocket",
            "path": path,
            "query_string": b"",
            "headers": headers,
            "subprotocols": [],
        }
        super().__init__(app, scope)

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """(True, subprotocol) when accepted, (False, close code) when refused."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, response.get("subprotocol")

    async def receive_json_from(self, timeout: float = 1) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def _session_cookie(user: object) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def run(coro_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    return async_to_sync(coro_fn)(*args)


async def _connect(headers: list[tuple[bytes, bytes]]) -> tuple[bool, Any]:
    communicator = WebsocketCommunicator(application, "/ws/activity/", headers=headers)
    connected, detail = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected, detail


def test_an_anonymous_visitor_is_refused() -> None:
    connected, code = run(_connect, [LOCAL_ORIGIN])

    assert connected is False
    assert code == CLOSE_UNAUTHENTICATED


def test_a_user_without_a_role_is_refused(make_user: Callable[..., object]) -> None:
    connected, code = run(_connect, [_session_cookie(make_user(None)), LOCAL_ORIGIN])

    assert (connected, code) == (False, CLOSE_UNAUTHENTICATED)


def test_a_logged_in_user_is_accepted(make_user: Callable[..., object]) -> None:
    connected, _ = run(_connect, [_session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN])

    assert connected is True


def test_a_foreign_origin_is_refused(make_user: Callable[..., object]) -> None:
    connected, _ = run(
        _connect, [_session_cookie(make_user(Role.VIEWER)), (b"origin", b"https://evil.example")]
    )

    assert connected is False


def test_a_missing_origin_is_refused(make_user: Callable[..., object]) -> None:
    connected, _ = run(_connect, [_session_cookie(make_user(Role.VIEWER))])

    assert connected is False


async def _receive_published(headers: list[tuple[bytes, bytes]], payload: dict[str, Any]) -> Any:
    communicator = WebsocketCommunicator(application, "/ws/activity/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    try:
        sent = await sync_to_async(events.publish)(events.ACTIVITY_GROUP, "activity.event", payload)
        assert sent is True
        return await communicator.receive_json_from(timeout=2)
    finally:
        await communicator.disconnect()


def test_a_published_activity_event_reaches_the_user_in_the_envelope(
    make_user: Callable[..., object],
) -> None:
    payload = {
        "id": 7,
        "at": "2025-01-01T00:00:00+00:00",
        "actor": "ada",
        "action": "create",
        "object": "k",
        "source": "api",
    }

    message = run(_receive_published, [_session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN], payload)

    assert message == {"type": "activity.event", "payload": payload}
