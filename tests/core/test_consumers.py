"""The activity websocket, through the real ASGI application and the channels_redis layer."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import override_settings

from apps.core import events
from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.domain.roles import Role
from apps.core.redis_layout import channel_layers_for
from moc_site.asgi import application
from tests.procs import free_port
from tests.wsclient import LOCAL_ORIGIN, WebsocketCommunicator
from tests.wsclient import session_cookie as _session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_a_refused_handshake_never_touches_the_channel_layer(redis_server: object) -> None:
    # A channel layer nobody listens on: the refusal must not need it, nor fail after it.
    async def go() -> tuple[tuple[bool, Any], None]:
        communicator = WebsocketCommunicator(application, "/ws/activity/", headers=[LOCAL_ORIGIN])
        return await communicator.connect(timeout=5), await communicator.wait(timeout=2)

    with override_settings(CHANNEL_LAYERS=channel_layers_for(f"redis://127.0.0.1:{free_port()}/0", 10)):
        refused, ended = run(go)

    assert refused == (False, CLOSE_UNAUTHENTICATED)
    assert ended is None  # the application returned by itself, without an error


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
