"""The deployment page's websocket, through the real ASGI application and the channels_redis layer."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from apps.core import events as core_events
from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.deployments import events, figures, rollup
from apps.deployments.consumers import CLOSE_NOT_FOUND
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import ReleaseState
from apps.deployments.models import ServingMinute
from moc_site.asgi import application
from tests.deployments.factories import DeploymentFactory, ReleaseFactory
from tests.wsclient import LOCAL_ORIGIN, WebsocketCommunicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(headers: list[tuple[bytes, bytes]], name: str = "chat") -> tuple[WebsocketCommunicator, Any]:
    communicator = WebsocketCommunicator(application, f"/ws/deployments/{name}/", headers=headers)
    connected, detail = await communicator.connect(timeout=5)
    return communicator, (connected, detail)


async def _next_of(communicator: WebsocketCommunicator, kind: str, timeout: float = 3) -> dict[str, Any]:
    """The next message of `kind`, skipping the figures pushed meanwhile."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = await communicator.poll_json(left)
        if message is not None and message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} within {timeout} s")


def test_an_anonymous_visitor_is_refused() -> None:
    DeploymentFactory(name="chat")

    async def go() -> Any:
        return (await _open([LOCAL_ORIGIN]))[1]

    assert async_to_sync(go)() == (False, CLOSE_UNAUTHENTICATED)


def test_an_unknown_deployment_is_closed_with_a_code_the_client_can_read(
    make_user: Callable[..., object],
) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> tuple[Any, Any]:
        communicator, connected = await _open(headers, "no-such-thing")
        return connected, await communicator.receive_output(2)

    connected, closed = async_to_sync(go)()

    assert connected[0] is True
    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}


def test_a_viewer_gets_the_live_releases_figures_on_connect(make_user: Callable[..., object]) -> None:
    release = ReleaseFactory(deployment__name="chat", state=ReleaseState.PROMOTED, traffic_percent=100)
    release.deployment.current_release = release
    release.deployment.save()
    other = ReleaseFactory(deployment__name="other", state=ReleaseState.PROMOTED)
    other.deployment.current_release = other
    other.deployment.save()
    at = time.time() - 60
    for _ in range(10):
        figures.record(redis_client(), release_id=release.pk, outcome=Outcome.OK, latency_ms=20, at=at)
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> dict[str, Any]:
        communicator, _ = await _open(headers)
        try:
            return await _next_of(communicator, "deployment.figures")
        finally:
            await communicator.disconnect()

    message = async_to_sync(go)()

    [series] = message["payload"]["releases"]
    assert series["id"] == release.pk
    assert str(release.model_version) in series["label"]
    bucket = int(at) // figures.BUCKET_S * figures.BUCKET_S
    [point] = [p for p in series["points"] if p["t"] == bucket]
    assert (point["rps"], point["error_rate"], point["requests"]) == (10 / figures.BUCKET_S, 0.0, 10)
    assert point["goodput"] == 10 / figures.BUCKET_S  # no SLO: every answer is good
    assert len(series["points"]) >= 170  # fifteen minutes of 5-s buckets, empty ones included


def test_the_page_hears_which_figures_drifted_on_connect(make_user: Callable[..., object]) -> None:
    release = ReleaseFactory(deployment__name="chat", state=ReleaseState.PROMOTED, traffic_percent=100)
    end = rollup.last_complete_minute_end(time.time())
    for i in range(1, 66):  # an hour at 40 ms, then the last five minutes at 400 ms
        ServingMinute.objects.create(
            deployment=release.deployment,
            release=release,
            version=release.model_version,
            minute=datetime.fromtimestamp(end - i * 60, tz=UTC),
            ok=60,
            requests=60,
            latency_p99_ms=400.0 if i <= 5 else 40.0 + i % 3,
        )
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> dict[str, Any]:
        communicator, _ = await _open(headers)
        try:
            return await _next_of(communicator, "deployment.anomalies")
        finally:
            await communicator.disconnect()

    [moved] = async_to_sync(go)()["payload"]["anomalies"]

    assert (moved["figure"], moved["direction"], moved["recent"]) == ("p99_ms", "up", 400.0)


def test_a_published_release_change_reaches_the_page_in_the_envelope(
    make_user: Callable[..., object],
) -> None:
    DeploymentFactory(name="chat")
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]
    payload = {"release": 7, "state": "paused", "traffic_percent": 10}

    async def go() -> dict[str, Any]:
        communicator, connected = await _open(headers)
        assert connected[0] is True
        try:
            sent = await sync_to_async(core_events.publish)(
                events.deployment_group("chat"), "release.changed", payload
            )
            assert sent is True
            return await _next_of(communicator, "release.changed")
        finally:
            await communicator.disconnect()

    assert async_to_sync(go)() == {"type": "release.changed", "payload": payload}


def test_a_finished_check_reaches_the_page(make_user: Callable[..., object]) -> None:
    DeploymentFactory(name="chat")
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]
    payload = {"run": 3, "name": "health", "status": "pass"}

    async def go() -> dict[str, Any]:
        communicator, _ = await _open(headers)
        try:
            await sync_to_async(core_events.publish)(
                events.deployment_group("chat"), "verification.check", payload
            )
            return await _next_of(communicator, "verification.check")
        finally:
            await communicator.disconnect()

    assert async_to_sync(go)()["payload"] == payload


def test_another_deployments_changes_do_not_reach_the_page(make_user: Callable[..., object]) -> None:
    DeploymentFactory(name="chat")
    DeploymentFactory(name="other")
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> list[str]:
        communicator, _ = await _open(headers)
        try:
            await sync_to_async(core_events.publish)(events.deployment_group("other"), "release.changed", {})
            seen = []
            while (message := await communicator.poll_json(1.5)) is not None:
                seen.append(message["type"])
            return seen
        finally:
            await communicator.disconnect()

    assert "release.changed" not in async_to_sync(go)()
