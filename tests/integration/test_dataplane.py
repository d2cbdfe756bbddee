"""The data plane live: real uvicorn processes of moc_site.asgi (as the run command starts them),
the run command's nginx in front, the session's redis-server, the test database (a file). A device
worker is a stand-in on the direct channel (tests/deployments/dataplane/standin.py).

- A revoked key is refused on every web process within seconds, well inside the cache's own
  expiry: the processes heard of it.
- Tokens stream through nginx as they are made (no buffering on /v1/).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core import services
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.deployments.dataplane import invalidation
from apps.serving.domain import wire
from tests.deployments.dataplane.standin import FIGURES, StandIn
from tests.deployments.live import placement_of, serving
from tests.integration.conftest import worker_env
from tests.procs import (
    Process,
    RedisServer,
    free_port,
    nginx_command,
    nginx_render,
    uvicorn_command,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("beats_current")]

# Long enough that only the invalidation message, never expiry, can explain a fast refusal.
CACHE_S = 30.0
# What MOC promises: a revoked key stops working within the default cache's seconds.
PROMISED_S = 5.0
GAP_S = 1.5  # between the stand-in's two tokens


@pytest.fixture
def start_web(
    redis_server: RedisServer, transactional_db: None, tmp_path: Path
) -> Iterator[Callable[[], int]]:
    """Start a uvicorn of moc_site.asgi as scripts/run.sh does; its port, once it serves."""
    started: list[Process] = []

    def start() -> int:
        port = free_port()
        args = uvicorn_command(port, "--lifespan", "off")
        env = worker_env(redis_server, MOC_DATAPLANE_CACHE_S=str(CACHE_S), MOC_WORKER_SILENT_AFTER_S="60")
        proc = Process(args, env, tmp_path / f"uvicorn-{port}.log")
        proc.start()
        started.append(proc)
        wait_until(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 60, "uvicorn to serve /healthz")
        return port

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def start_proxy(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start the run command's nginx (manage.py nginx_conf) in front of uvicorn on `ws`; its port,
    once it passes /v1/ on."""
    started: list[Process] = []

    def start(ws: int, **env: str) -> int:
        listen = free_port()
        environment = worker_env(redis_server, **env)
        conf = nginx_render(tmp_path / "nginx", environment, listen=listen, web=free_port(), ws=ws)
        nginx = Process(nginx_command(tmp_path / "nginx", conf), environment, tmp_path / "nginx.log")
        nginx.start()
        started.append(nginx)
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{listen}/v1/models").status_code == 401,
            20,
            "nginx to pass /v1/",
        )
        return listen

    yield start
    for proc in started:
        proc.stop()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _key(make_user: Callable[..., Any]) -> tuple[Any, str]:
    owner = make_user(Role.OPERATOR)
    return services.api_key_create(owner=owner, name="live", role=Role.OPERATOR, acting_role=Role.OPERATOR)


def _listeners() -> int:
    return int(redis_client().pubsub_numsub(invalidation.CHANNEL)[0][1])


def test_a_revoked_key_is_refused_within_seconds_on_every_web_process(
    start_web: Callable[[], int], make_user: Callable[..., Any]
) -> None:
    ports = [start_web(), start_web()]
    api_key, secret = _key(make_user)
    headers = {"Authorization": f"Bearer {secret}"}
    for port in ports:  # each process now holds the key, for CACHE_S
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers).status_code == 200
    wait_until(lambda: _listeners() >= 2, 10, "both processes to listen for changes")

    revoked = time.monotonic()
    services.api_key_revoke(api_key=api_key)

    for port in ports:
        wait_until(
            lambda port=port: (
                httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers).status_code == 401
            ),
            PROMISED_S,
            f"the process on {port} to refuse the revoked key",
            interval=0.05,
        )
    assert time.monotonic() - revoked < PROMISED_S


def slowly(request: wire.Request) -> Iterator[dict[str, Any]]:
    """A streamed answer whose second token comes GAP_S after the first."""
    yield wire.delta(0, "hel")
    time.sleep(GAP_S)
    yield wire.delta(0, "lo", finish_reason="length")
    choice = {"index": 0, "text": "", "finish_reason": "length", "tokens": None, "prompt": None}
    yield wire.done({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}, FIGURES)


def test_tokens_stream_through_the_run_commands_nginx_as_they_are_made(
    start_web: Callable[[], int], start_proxy: Callable[..., int], make_user: Callable[..., Any]
) -> None:
    deployment, stable, _ = serving()
    worker = StandIn(placement_of(stable).device.queue, slowly)  # type: ignore[arg-type]
    worker.start()
    listen = start_proxy(start_web())
    _, secret = _key(make_user)
    body = {"model": deployment.name, "prompt": "Once", "max_tokens": 2, "stream": True}
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{listen}/v1/models").status_code == 401,
            20,
            "nginx to pass /v1/",
        )
        began = time.monotonic()
        arrivals: list[tuple[float, bytes]] = []
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{listen}/v1/completions",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-moc-release"] == str(stable.pk)
            for chunk in response.iter_raw():
                arrivals.append((time.monotonic() - began, chunk))
    finally:
        worker.stop()

    first = next(at for at, chunk in arrivals if b'"hel"' in chunk)
    last = arrivals[-1][0]
    assert b"".join(c for _, c in arrivals).endswith(b"data: [DONE]\n\n")
    assert last - first >= GAP_S * 0.8  # the first token came out before the second was made


def test_nginx_refuses_a_body_over_the_limit_in_openais_shape(
    start_web: Callable[[], int], start_proxy: Callable[..., int]
) -> None:
    listen = start_proxy(start_web(), MOC_MAX_REQUEST_BYTES="1000")

    response = httpx.post(f"http://127.0.0.1:{listen}/v1/completions", content=b"x" * 5000)

    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert "5000" in error["message"]
