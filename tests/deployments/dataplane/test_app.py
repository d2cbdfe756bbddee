"""The data plane's HTTP side, through its ASGI app (httpx's ASGI transport, real Redis and
database): paths and methods, keys and roles, bodies, answers and streams in OpenAI's shapes, the
routing headers, refusals with their statuses, and the figures each request leaves. Device
workers are stand-ins on the direct channel (standin.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync

from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.dataplane import app as dataplane
from apps.deployments.dataplane import counting
from apps.deployments.domain.split import key_point
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
from apps.serving.domain import wire
from apps.serving.resilience import Bulkhead
from tests.deployments.dataplane.standin import StandIn, answered
from tests.deployments.live import placement_of, release_on, serving
from tests.serving.test_resilience import Holder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("beats_current")]

MakeKey = Callable[..., tuple[ApiKey, str]]
COMPLETE = {"model": "", "prompt": "Once upon a time", "max_tokens": 2}


def call(method: str, path: str, secret: str | None = None, **options: Any) -> httpx.Response:
    """One request to the data plane, once the figures it counts are written."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=dataplane.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://moc") as client:
            response = await client.request(method, path, headers=headers, **options)
        await counting.flush()
        return response

    return async_to_sync(go)()


def events(response: httpx.Response) -> list[Any]:
    """A stream's data lines, parsed ("[DONE]" as is)."""
    lines = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


@pytest.fixture
def secret(make_key: MakeKey) -> str:
    return make_key(Role.OPERATOR)[1]


@pytest.fixture
def workers() -> Iterator[Callable[..., StandIn]]:
    """Stand-ins answering a release's placements' queues."""
    started: list[StandIn] = []

    def start(release: Release, script: Callable[[wire.Request], list[dict[str, Any]]] = answered) -> StandIn:
        worker = StandIn(placement_of(release).device.queue, script)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def ask(deployment: Deployment, secret: str, path: str = "/v1/completions", **body: Any) -> httpx.Response:
    return call("POST", path, secret, json={**COMPLETE, "model": deployment.name, **body})


# --- paths, keys, bodies --------------------------------------------------------------------


def test_an_unknown_path_is_404_in_openais_shape(secret: str) -> None:
    response = call("GET", "/v1/nothing", secret)

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (GET /v1/nothing)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/completions"), ("POST", "/v1/models"), ("DELETE", "/v1/models/x")]
)
def test_a_wrong_method_is_405_saying_which_it_takes(method: str, path: str, secret: str) -> None:
    response = call(method, path, secret)

    assert response.status_code == 405
    assert response.headers["allow"] in ("GET", "POST")
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_request_without_a_key_is_401() -> None:
    response = call("GET", "/v1/models")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_a_viewers_key_is_403(make_key: MakeKey) -> None:
    deployment, _, _ = serving()
    _, viewer = make_key(Role.VIEWER)

    response = ask(deployment, viewer)

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_a_body_over_the_limit_is_413(secret: str, settings: Any) -> None:
    settings.MOC_MAX_REQUEST_BYTES = 100

    response = call("POST", "/v1/completions", secret, content=b"{" + b" " * 200 + b"}")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_body_that_is_not_json_is_400(secret: str) -> None:
    response = call("POST", "/v1/completions", secret, content=b"{nope")

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_bad_parameter_is_400_naming_it(secret: str) -> None:
    deployment, _, _ = serving()

    response = ask(deployment, secret, temperature=5)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"


# --- models ---------------------------------------------------------------------------------


def test_the_models_are_the_deployments_the_key_may_call(make_key: MakeKey) -> None:
    granted, _, _ = serving()
    serving()
    _, secret = make_key(Role.OPERATOR, grants=[granted])

    listed = call("GET", "/v1/models", secret).json()

    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == [granted.name]
    assert listed["data"][0]["object"] == "model"
    assert listed["data"][0]["owned_by"] == "moc"


def test_a_model_outside_the_keys_grants_does_not_exist_for_it(make_key: MakeKey) -> None:
    granted, _, _ = serving()
    other, _, _ = serving()
    _, secret = make_key(Role.OPERATOR, grants=[granted])

    assert call("GET", f"/v1/models/{granted.name}", secret).json()["id"] == granted.name
    for response in (call("GET", f"/v1/models/{other.name}", secret), ask(other, secret)):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"


# --- answers --------------------------------------------------------------------------------


def test_a_completion_is_answered_naming_its_release_and_counted_for_it(
    secret: str, workers: Callable[..., StandIn]
) -> None:
    deployment, stable, _ = serving()
    workers(stable)

    response = ask(deployment, secret)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["model"] == deployment.name
    assert body["choices"][0]["text"] == "hello"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert response.headers["x-moc-deployment"] == deployment.name
    assert response.headers["x-moc-release"] == str(stable.pk)
    assert response.headers["x-moc-version"] == str(stable.model_version_id)
    assert response.headers["x-moc-side"] == "stable"
    total = figures.totals(redis_client(), [stable.pk])[stable.pk]
    assert (total.requests, total.errors) == (1, 0)


def test_a_streamed_chat_starts_with_the_role_and_ends_with_usage_then_done(
    secret: str, workers: Callable[..., StandIn]
) -> None:
    deployment, stable, _ = serving()
    worker = workers(stable)

    response = ask(
        deployment,
        secret,
        path="/v1/chat/completions",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-moc-release"] == str(stable.pk)
    got = events(response)
    assert got[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in got[1:-2] if e["choices"]) == "hello"
    assert got[-2]["usage"]["completion_tokens"] == 2
    assert got[-1] == "[DONE]"
    assert worker.taken[0].op == wire.Op.CHAT
    assert worker.taken[0].stream


def test_embeddings_come_as_base64_when_asked(secret: str, workers: Callable[..., StandIn]) -> None:
    deployment, stable, _ = serving()
    workers(stable)

    response = ask(deployment, secret, path="/v1/embeddings", input="hi", encoding_format="base64")

    assert response.status_code == 200, response.text
    vector = base64.b64decode(response.json()["data"][0]["embedding"])
    assert struct.unpack("<2f", vector) == (0.5, -0.25)


def test_the_calls_user_is_its_sticky_key_to_a_side(secret: str, workers: Callable[..., StandIn]) -> None:
    deployment, stable, canary = serving(canary_percent=50)
    assert canary is not None
    workers(stable)
    workers(canary)
    user = next(u for i in range(100) if key_point(u := f"user-{i}") < 50)

    sides = {ask(deployment, secret, user=user).headers["x-moc-side"] for _ in range(3)}

    assert sides == {"canary"}


def test_the_release_rolled_back_from_answers_while_stable_has_no_replica(
    secret: str, workers: Callable[..., StandIn]
) -> None:
    deployment, stable, _ = serving()
    rolled_back = release_on(
        deployment, state=ReleaseState.ROLLED_BACK, previous_release=stable, promoted_at=stable.created_at
    )
    placement_of(stable).delete()
    workers(rolled_back)

    response = ask(deployment, secret)

    assert response.status_code == 200, response.text
    assert response.headers["x-moc-side"] == "fallback"
    assert response.headers["x-moc-release"] == str(rolled_back.pk)


# --- refusals -------------------------------------------------------------------------------


def test_a_paused_deployment_is_503_not_serving_with_retry_after(secret: str) -> None:
    deployment, _, _ = serving()
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.PAUSED)

    response = ask(deployment, secret)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_serving"
    assert "paused" in response.json()["error"]["message"]
    assert int(response.headers["retry-after"]) > 0


def test_a_full_bulkhead_is_429_with_retry_after(secret: str) -> None:
    deployment, stable, _ = serving(max_concurrency=1, max_queue=0)
    holder = Holder(Bulkhead(redis_client(), f"deployment {deployment.pk}", concurrency=1, queue=0))
    holder.start()
    assert holder.got.wait(5)

    try:
        response = ask(deployment, secret)
    finally:
        holder.finish()

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "bulkhead_full"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-moc-release"] == str(stable.pk)
    total = figures.totals(redis_client(), [stable.pk])[stable.pk]
    assert (total.requests, total.refused) == (0, 1)  # not the release's doing


def test_a_failure_after_the_first_token_is_an_error_event_then_done(
    secret: str, workers: Callable[..., StandIn]
) -> None:
    deployment, stable, _ = serving()
    workers(stable, lambda request: [wire.delta(0, "hel"), wire.error("internal", "the device fell over")])

    response = ask(deployment, secret, stream=True)

    assert response.status_code == 200
    got = events(response)
    assert got[0]["choices"][0]["text"] == "hel"
    assert got[1]["error"]["type"] == "server_error" or got[1]["error"]["code"] == "internal"
    assert got[-1] == "[DONE]"
    assert figures.totals(redis_client(), [stable.pk])[stable.pk].errors == 1


def test_a_client_that_leaves_mid_stream_gives_its_slot_back(
    secret: str, workers: Callable[..., StandIn]
) -> None:
    deployment, stable, _ = serving(max_concurrency=1, max_queue=0)
    workers(stable, lambda request: [wire.delta(0, "hel")])  # then nothing more
    body = json.dumps({**COMPLETE, "model": deployment.name, "stream": True}).encode()
    sent: list[dict[str, Any]] = []

    async def go() -> None:
        first_body = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await first_body.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                first_body.set()

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/completions",
            "headers": [(b"authorization", f"Bearer {secret}".encode())],
            "client": ("127.0.0.1", 1),
        }
        await asyncio.wait_for(dataplane.app(scope, receive, send), 5)

    async_to_sync(go)()

    assert sent[0]["status"] == 200
    assert b"hel" in sent[1]["body"]
    bulkhead = Bulkhead(redis_client(), f"deployment {deployment.pk}", concurrency=1, queue=0)
    assert bulkhead.occupancy() == (0, 0)
