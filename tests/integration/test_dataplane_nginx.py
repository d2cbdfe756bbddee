"""The data plane through the run command's own nginx (`manage.py nginx_conf`, as scripts/run.sh
renders it) in front of a real uvicorn serving moc_site.asgi, with a real device worker holding
the demo LM: a streamed answer reaches the client as the worker makes it, in many reads, not in
one block once nginx has buffered it all; and the headers a client acts on (Retry-After, the
X-MOC-* that name who answered) pass through."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apps.deployments.models import Deployment
from apps.models import demo
from apps.models.models import ModelVersion
from tests.integration.deployed import (  # noqa: F401
    NAME,
    deployed,
    loaded,
    operator_key,
    registered,
    serving_worker,
    settled,
)
from tests.procs import Process, free_port, nginx_command, nginx_render, project_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# About a second of the demo LM's work (16 choices of 100 tokens), streamed as ~1,600 events.
SLOW = {"prompt": "The fleet", "max_tokens": 100, "n": 16, "temperature": 0, "stream": True}


@dataclass(frozen=True, slots=True)
class Proxied:
    base: str  # nginx
    headers: dict[str, str]
    deployment: Deployment


@pytest.fixture
def proxied(
    asgi_server: str,
    operator_key: str,  # noqa: F811
    serving_worker: Callable[[], Process],  # noqa: F811
    registered: dict[str, ModelVersion],  # noqa: F811
    tmp_path: Path,
) -> Iterator[Proxied]:
    """nginx as the run command configures it, its uvicorn upstream the live one; the demo LM
    deployed with a bulkhead of one request at a time and none waiting."""
    serving_worker()
    version = registered[demo.BASE]
    deployment = deployed(version, [loaded(version)], pinned=True, max_concurrency=1, max_queue=0)
    port = free_port()
    nginx_dir = tmp_path / "nginx"
    uvicorn_port = int(asgi_server.rsplit(":", 1)[1])
    conf = nginx_render(nginx_dir, project_env(), listen=port, web=free_port(), ws=uvicorn_port)
    nginx = Process(nginx_command(nginx_dir, conf), project_env(), tmp_path / "nginx.log")
    nginx.start()
    base = f"http://127.0.0.1:{port}"
    # Unauthenticated, the data plane answers 401 at once: proof the path reaches uvicorn.
    wait_until(lambda: httpx.get(f"{base}/v1/models", timeout=2).status_code == 401, 20, "nginx's /v1/")
    yield Proxied(base, {"Authorization": f"Bearer {operator_key}"}, deployment)
    nginx.stop()


def test_a_stream_reaches_the_client_through_nginx_as_it_is_made(proxied: Proxied) -> None:
    reads: list[tuple[float, int]] = []
    with (
        httpx.Client(base_url=proxied.base, headers=proxied.headers, timeout=120) as client,
        client.stream("POST", "/v1/completions", json={"model": NAME, **SLOW}) as response,
    ):
        body = b""
        for chunk in response.iter_raw():
            reads.append((time.perf_counter(), len(chunk)))
            body += chunk

    assert response.status_code == 200, body[:500]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-moc-release"] == str(proxied.deployment.current_release_id)
    assert response.headers["x-moc-version"] == str(proxied.deployment.current_release.model_version_id)
    events = [line for line in body.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert sum(len(json.loads(e.removeprefix("data: "))["choices"]) for e in events[:-1]) >= 16 * 100
    first, last = reads[0][0], reads[-1][0]
    total = sum(size for _, size in reads)
    by_midpoint = sum(size for at, size in reads if at <= (first + last) / 2)
    # Many reads spread over the worker's second of work, half of it not there yet halfway through
    assert len(reads) >= 10
    assert last - first > 0.3
    assert by_midpoint < total * 0.9


def test_retry_after_and_the_moc_headers_pass_through_nginx(proxied: Proxied) -> None:
    with (
        httpx.Client(base_url=proxied.base, headers=proxied.headers, timeout=120) as client,
        client.stream("POST", "/v1/completions", json={"model": NAME, **SLOW}) as holder,
    ):
        chunks = holder.iter_raw()
        began = next(chunks)  # the stream holds the bulkhead's one slot until its last token
        refused = client.post("/v1/completions", json={"model": NAME, "prompt": "The fleet", "max_tokens": 4})
        rest = b"".join(chunks)

    assert refused.status_code == 429, (refused.text, began, rest[-1000:])
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-moc-deployment"] == NAME
    assert refused.headers["x-moc-release"] == str(proxied.deployment.current_release_id)
    assert refused.json()["error"]["type"]
