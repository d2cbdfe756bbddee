"""Dataset uploads larger than MOC_MAX_REQUEST_BYTES through the run command's real nginx in front of
a real gunicorn: the upload path takes them (streamed to gunicorn) up to its own limit, every other path
still refuses them with MOC's JSON 413.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.jobs.models import Dataset
from tests.integration.conftest import database_env
from tests.procs import (
    Process,
    RedisServer,
    free_port,
    gunicorn_command,
    nginx_command,
    nginx_render,
    project_env,
    wait_until,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
REQUEST_LIMIT = 2 * MiB
# Above the 3 MiB the test uploads, below the 5 MiB it is refused, and small enough to send quickly.
UPLOAD_LIMIT = 4 * MiB
ENVELOPE = 64 * 1024


@dataclass(frozen=True)
class Stack:
    nginx: str
    datasets: Path
    var: Path


def _serving(base: str) -> bool:
    return httpx.get(f"{base}/healthz", timeout=1).status_code == 200


@pytest.fixture
def stack(redis_server: RedisServer, transactional_db: None, tmp_path: Path) -> Iterator[Stack]:
    """gunicorn and nginx as scripts/run.sh starts them, on the test database, with an owner-only var
    folder (nginx's workers, as nobody, could not write a body there) and a dataset root of their own."""
    var = tmp_path / "var"
    var.mkdir()
    var.chmod(0o700)
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    env = project_env(
        REDIS_URL=redis_server.url,
        MOC_VAR_DIR=str(var),
        MOC_DATASET_ROOTS=str(datasets),
        MOC_MAX_REQUEST_BYTES=str(REQUEST_LIMIT),
        MOC_DATASET_UPLOAD_MAX_BYTES=str(UPLOAD_LIMIT),
        **database_env(),
    )
    web_port, nginx_port = free_port(), free_port()
    started = [Process(gunicorn_command(web_port), env, tmp_path / "gunicorn.log")]
    started[0].start()
    try:
        nginx_dir = var / "nginx"
        conf = nginx_render(nginx_dir, env, listen=nginx_port, web=web_port, ws=free_port())
        started.append(Process(nginx_command(nginx_dir, conf), env, tmp_path / "nginx.log"))
        started[1].start()
        base = f"http://127.0.0.1:{nginx_port}"
        wait_until(lambda: _serving(f"http://127.0.0.1:{web_port}"), 60, "gunicorn to serve /healthz")
        wait_until(lambda: _serving(base), 20, "nginx to serve /healthz")
        yield Stack(base, datasets, var)
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture
def key(key_client: Callable[..., APIClient]) -> str:
    secret: str = key_client(Role.OPERATOR).key_secret
    return secret


def jsonl(size: int) -> bytes:
    row = (
        json.dumps({"prompt": "What does MOC run?", "completion": "Models, on its own GPUs."}).encode()
        + b"\n"
    )
    return row * (size // len(row))


def too_large(size: int, limit: int) -> dict[str, object]:
    return {
        "error": "request_too_large",
        "detail": f"The body is {size} bytes; the limit is {limit}.",
        "fields": {},
    }


def upload(stack: Stack, key: str, data: bytes, name: str) -> httpx.Response:
    return httpx.post(
        f"{stack.nginx}/api/v1/datasets/",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": (f"{name}.jsonl", data, "application/jsonl")},
        data={"name": name},
        timeout=60,
    )


def test_a_3_mib_dataset_uploads_through_nginx(stack: Stack, key: str) -> None:
    data = jsonl(3 * MiB)
    assert REQUEST_LIMIT < len(data) < UPLOAD_LIMIT

    response = upload(stack, key, data, "big")

    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["source"]) == ("big", "uploaded")
    assert (stack.datasets / "big.jsonl").read_bytes() == data
    assert Dataset.objects.get(name="big").size_bytes == len(data)
    log = (stack.var / "nginx" / "access.log").read_text() + (stack.var.parent / "nginx.log").read_text()
    assert "buffered to a temporary file" not in log


def test_a_dataset_over_the_upload_limit_gets_moc_json_413_naming_that_limit(stack: Stack, key: str) -> None:
    data = jsonl(5 * MiB)

    response = upload(stack, key, data, "huge")

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    size = int(response.request.headers["content-length"])
    assert response.json() == too_large(size, UPLOAD_LIMIT + ENVELOPE)
    assert list(stack.datasets.iterdir()) == []


def test_a_3_mib_body_to_another_api_path_gets_moc_json_413(stack: Stack, key: str) -> None:
    size = 3 * MiB

    response = httpx.post(
        f"{stack.nginx}/api/v1/jobs/",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=b"x" * size,
        timeout=60,
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == too_large(size, REQUEST_LIMIT)
