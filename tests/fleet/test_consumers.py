"""The telemetry websocket through the real ASGI application, the relay and a real Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.fleet import telemetry
from apps.fleet.consumers import CLOSE_BAD_REQUEST
from moc_site.asgi import application
from tests.wsclient import LOCAL_ORIGIN, WebsocketCommunicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


def node_message(node: str, device_ids: list[int]) -> dict[str, Any]:
    devices = [
        {"id": i, "index": n, "simulated": True, "gpu_util": 10.0 * n} for n, i in enumerate(device_ids)
    ]
    return telemetry.telemetry_message(node=node, node_id=1, at=1.0, backend="sim", devices=devices)


async def publish_and_receive(
    communicator: WebsocketCommunicator, messages: list[dict[str, Any]], timeout: float = 5
) -> dict[str, Any]:
    """Publish once, right after the socket was accepted, and return what arrives first: the
    relay subscribes before it accepts, so nothing published after that is missed."""
    client = redis_client()
    for message in messages:
        telemetry.publish(client, message)
    received = await communicator.poll_json(timeout)
    if received is None:
        raise TimeoutError("nothing arrived")
    return received


async def open_socket(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/telemetry/", headers, query_string=query)
    connected, detail = await communicator.connect(timeout=5)
    assert connected, detail
    return communicator


def test_an_anonymous_client_is_refused() -> None:
    async def go() -> Any:
        return await WebsocketCommunicator(application, "/ws/telemetry/", [LOCAL_ORIGIN]).connect(timeout=5)

    assert async_to_sync(go)() == (False, CLOSE_UNAUTHENTICATED)


def test_a_subscription_that_is_not_device_ids_is_closed_with_a_code_the_client_can_read(
    make_user: Callable[..., object],
) -> None:
    # A close before the handshake is accepted reaches a client as an HTTP 403, without the code.
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> tuple[Any, Any]:
        socket = WebsocketCommunicator(application, "/ws/telemetry/", headers, query_string=b"devices=gpu0")
        return await socket.connect(timeout=5), await socket.receive_output(timeout=5)

    accepted, closed = async_to_sync(go)()

    assert accepted == (True, None)
    assert closed == {"type": "websocket.close", "code": CLOSE_BAD_REQUEST}


def test_a_viewer_receives_each_node_message_as_published(make_user: Callable[..., object]) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        socket = await open_socket(headers)
        try:
            first = await publish_and_receive(socket, [node_message("n1", [1, 2])])
            following = await publish_and_receive(socket, [node_message("n1", [1, 2])])
            return first, following
        finally:
            await socket.disconnect()

    first, following = async_to_sync(go)()

    assert (first["type"], first["node"], first["simulated"]) == ("telemetry", "n1", True)
    assert [d["id"] for d in first["devices"]] == [1, 2]
    assert following["seq"] == first["seq"] + 1


def test_a_client_subscribed_to_some_devices_gets_only_those(make_user: Callable[..., object]) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> dict[str, Any]:
        socket = await open_socket(headers, query=b"devices=2,9")
        try:
            return await publish_and_receive(
                socket, [node_message("other", [5, 6]), node_message("n1", [1, 2])]
            )
        finally:
            await socket.disconnect()

    message = async_to_sync(go)()

    assert message["node"] == "n1"
    assert [d["id"] for d in message["devices"]] == [2]


def test_a_subscribe_message_changes_what_the_client_gets(make_user: Callable[..., object]) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> tuple[Any, Any, dict[str, Any]]:
        socket = await open_socket(headers, query=b"devices=1")
        try:
            await socket.send_input({"type": "websocket.receive", "text": "not json"})
            refusal = await socket.receive_json_from(timeout=2)
            await socket.send_input(
                {"type": "websocket.receive", "text": '{"type": "subscribe", "devices": "all"}'}
            )
            confirmation = await socket.receive_json_from(timeout=2)
            message = await publish_and_receive(socket, [node_message("n1", [1, 2])])
            return refusal, confirmation, message
        finally:
            await socket.disconnect()

    refusal, confirmation, message = async_to_sync(go)()

    assert refusal["type"] == "error"
    assert "subscribe" in refusal["detail"]
    assert confirmation == {"type": "subscribed", "devices": "all"}
    assert [d["id"] for d in message["devices"]] == [1, 2]


def test_a_subscribe_message_nested_too_deeply_to_decode_is_not_understood(
    make_user: Callable[..., object],
) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> dict[str, Any]:
        socket = await open_socket(headers)
        try:
            await socket.send_input({"type": "websocket.receive", "text": "[" * 50_000 + "]" * 50_000})
            return await socket.receive_json_from(timeout=2)
        finally:
            await socket.disconnect()

    answer = async_to_sync(go)()

    assert answer["type"] == "error"
    assert answer["detail"].startswith("Not understood")


def test_node_state_messages_reach_clients_subscribed_to_some_devices(
    make_user: Callable[..., object],
) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]
    offline = telemetry.node_state_message(node="n1", node_id=1, at=2.0, state="offline", reason="silent")

    async def go() -> dict[str, Any]:
        socket = await open_socket(headers, query=b"devices=1")
        try:
            return await publish_and_receive(socket, [offline])
        finally:
            await socket.disconnect()

    message = async_to_sync(go)()

    assert (message["type"], message["state"]) == ("node.state", "offline")
