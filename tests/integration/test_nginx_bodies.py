"""Request bodies through the run command's real nginx in front of a real gunicorn.

nginx gets the configuration scripts/run.sh gives it (`manage.py nginx_conf`), gunicorn the
project's deploy/gunicorn.conf.py and the run command's flags. Every size is tried many times
over one keep-alive connection: a body answered before it was read fails only some of the time.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.procs import (
    ROOT,
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
LIMIT = 1 * MiB
TRIES = 10
URL = "/api/v1/api-keys/"


@dataclass(frozen=True)
class Stack:
    nginx: str
    gunicorn: str
    nginx_log: Path
    nginx_pid: int


def _serving(base: str) -> bool:
    return httpx.get(f"{base}/healthz", timeout=1).status_code == 200


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@pytest.fixture
def start_stack(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start gunicorn and nginx as run.sh does, with MOC_VAR_DIR in a folder of the given mode."""
    started: list[Process] = []

    def start(*, limit: int = LIMIT, nginx_limit: int | None = None, var_mode: int = 0o755) -> Stack:
        var = tmp_path / "var"
        var.mkdir(mode=var_mode)
        var.chmod(var_mode)  # mkdir's mode is masked by the umask
        env = project_env(REDIS_URL=redis_server.url, MOC_VAR_DIR=str(var), MOC_MAX_REQUEST_BYTES=str(limit))
        web_port, nginx_port = free_port(), free_port()
        gunicorn = Process(
            gunicorn_command(web_port),
            env,
            tmp_path / "gunicorn.log",
        )
        gunicorn.start()
        started.append(gunicorn)

        nginx_dir = var / "nginx"
        render_env = {**env, "MOC_MAX_REQUEST_BYTES": str(nginx_limit or limit)}
        conf = nginx_render(nginx_dir, render_env, listen=nginx_port, web=web_port, ws=free_port())
        nginx_log = tmp_path / "nginx.log"
        nginx = Process(nginx_command(nginx_dir, conf), env, nginx_log)
        nginx.start()
        started.append(nginx)

        assert nginx.proc is not None
        stack = Stack(
            f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{web_port}", nginx_log, nginx.proc.pid
        )
        wait_until(lambda: _serving(stack.gunicorn), 60, "gunicorn to serve /healthz")
        wait_until(lambda: _serving(stack.nginx), 20, "nginx to serve /healthz")
        return stack

    yield start
    for proc in reversed(started):
        proc.stop()


def post_many(base: str, size: int) -> list[httpx.Response]:
    """POST a JSON-typed body of `size` bytes TRIES times over one keep-alive connection."""
    body = b"x" * size
    with httpx.Client(base_url=base, timeout=30) as client:
        return [
            client.post(URL, content=body, headers={"Content-Type": "application/json"}) for _ in range(TRIES)
        ]


def too_large(size: int, limit: int = LIMIT) -> dict[str, object]:
    return {
        "error": "request_too_large",
        "detail": f"The body is {size} bytes; the limit is {limit}.",
        "fields": {},
    }


def answers(responses: list[httpx.Response]) -> list[tuple[int, str, object]]:
    return [
        (
            r.status_code,
            r.headers.get("content-type", ""),
            r.json() if "json" in r.headers.get("content-type", "") else r.text[:80],
        )
        for r in responses
    ]


SIZES_MB = [2, 3, 4, 5]


@pytest.mark.parametrize("size_mb", SIZES_MB)
def test_nginx_refuses_a_body_over_the_limit_with_moc_json_413_every_time(
    start_stack: Callable[..., Stack], size_mb: int
) -> None:
    stack = start_stack()
    size = size_mb * MiB

    assert answers(post_many(stack.nginx, size)) == [(413, "application/json", too_large(size))] * TRIES


@pytest.mark.parametrize("size_mb", SIZES_MB)
def test_gunicorn_behind_a_laxer_nginx_answers_413_every_time(
    start_stack: Callable[..., Stack], size_mb: int
) -> None:
    # An nginx whose cap is above MOC's (a proxy set up by hand): Django refuses, and must
    # have read the body first, or nginx answers 502. nginx holds these bodies in memory, so
    # an owner-only var folder, which its workers cannot enter, makes no difference.
    stack = start_stack(nginx_limit=8 * MiB, var_mode=0o700)
    size = size_mb * MiB

    assert answers(post_many(stack.nginx, size)) == [(413, "application/json", too_large(size))] * TRIES


def test_gunicorn_alone_answers_413_to_every_body_over_the_limit(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    size = 3 * MiB

    assert answers(post_many(stack.gunicorn, size)) == [(413, "application/json", too_large(size))] * TRIES


def test_a_body_under_the_limit_answered_before_it_is_read_gets_that_answer_every_time(
    start_stack: Callable[..., Stack],
) -> None:
    # Anonymous: DRF answers 401 without reading the body.
    stack = start_stack()

    responses = post_many(stack.nginx, LIMIT // 2)

    assert [(r.status_code, r.json()["error"]) for r in responses] == [(401, "not_authenticated")] * TRIES


def worker_users(nginx_pid: int) -> list[str]:
    ps = subprocess.run(
        ["ps", "-o", "user=", "--ppid", str(nginx_pid)], capture_output=True, text=True, check=True
    )
    return ps.stdout.split()


def test_nginx_needs_no_way_into_an_owner_only_var_folder(start_stack: Callable[..., Stack]) -> None:
    # Started as root, nginx's workers run as nobody, who cannot enter a 0700 folder: bodies
    # and responses must not be buffered to disk there.
    stack = start_stack(var_mode=0o700)

    responses = post_many(stack.nginx, LIMIT // 2)

    assert [(r.status_code, r.json()["error"]) for r in responses] == [(401, "not_authenticated")] * TRIES
    assert "buffered to a temporary file" not in stack.nginx_log.read_text()


def slow_get(base: str, path: str) -> bytes:
    """GET `path` as a slow client does: a small receive window, and a pause before reading,
    so nginx has more of the response than its buffers hold (it used to spool the rest to disk)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(30)
        sock.connect((host, int(port)))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        time.sleep(1)
        chunks = []
        while chunk := sock.recv(64 * 1024):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_response_larger_than_nginx_buffers_reaches_a_slow_client_whole(
    start_stack: Callable[..., Stack],
) -> None:
    # With an owner-only var folder nginx cannot spool a response to disk; it must stream it.
    stack = start_stack(var_mode=0o700)
    path = "/static/vendor/plotly.min.js"  # about 4.6 MB; nginx's proxy buffers hold 64 KiB
    direct = httpx.get(f"{stack.gunicorn}{path}", timeout=30)
    assert direct.status_code == 200
    assert len(direct.content) > 1024 * 1024

    head, _, body = slow_get(stack.nginx, path).partition(b"\r\n\r\n")

    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert body == direct.content
    assert "temporary file" not in stack.nginx_log.read_text()


def test_nginx_workers_never_run_as_root(start_stack: Callable[..., Stack]) -> None:
    # They parse what strangers send; started by root, nginx gives them its default user.
    stack = start_stack(var_mode=0o700)

    users = worker_users(stack.nginx_pid)

    assert users
    assert "root" not in users


def compose_proxy_conf(limit: int | None = None) -> tuple[str, int]:
    """deploy/nginx/compose.conf.template as the nginx image renders it at start, and the body
    limit it was given: compose's default, or `limit` as if set in .env. Like the image's
    entrypoint, it sources deploy/nginx/upload-limit.envsh (mounted in /docker-entrypoint.d/),
    then replaces each ${NAME} that NGINX_ENVSUBST_FILTER matches from the proxy's environment
    in compose.yaml and what the script exported."""
    environment = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["proxy"]["environment"]
    values = {name: re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", str(value)) for name, value in environment.items()}
    if limit is not None:
        values["MOC_MAX_REQUEST_BYTES"] = str(limit)
    sourced = subprocess.run(
        [
            "sh",
            "-c",
            '. "$0" && echo "$MOC_UPLOAD_MAX_BODY_BYTES"',
            str(ROOT / "deploy" / "nginx" / "upload-limit.envsh"),
        ],
        env=values,
        capture_output=True,
        text=True,
        check=True,
    )
    values["MOC_UPLOAD_MAX_BODY_BYTES"] = sourced.stdout.strip()
    matched = re.compile(values["NGINX_ENVSUBST_FILTER"])
    template = (ROOT / "deploy" / "nginx" / "compose.conf.template").read_text()
    text = re.sub(
        r"\$\{(\w+)\}",
        lambda m: values[m[1]] if m[1] in values and matched.search(m[1]) else m[0],
        template,
    )
    return text, int(values["MOC_MAX_REQUEST_BYTES"])


@pytest.mark.parametrize("limit", [None, 1 * MiB], ids=["compose default", "set in .env"])
def test_compose_nginx_refuses_a_body_over_moc_limit_with_moc_json_413(
    tmp_path: Path, limit: int | None
) -> None:
    # The rendered template goes into the nginx image's http {}; only its listen port changes here.
    port = free_port()
    site, limit = compose_proxy_conf(limit)
    (tmp_path / "site.conf").write_text(site.replace("listen 80 ", f"listen 127.0.0.1:{port} "))
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log stderr warn; events {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}/body; include {tmp_path}/site.conf; }}\n"
    )
    nginx = Process(nginx_command(tmp_path, tmp_path / "nginx.conf"), project_env(), tmp_path / "nginx.log")
    nginx.start()
    try:
        base = f"http://127.0.0.1:{port}"
        # Not a request: the proxied ones wait for Docker's DNS, which is not here.
        wait_until(lambda: _listening(port), 20, "nginx to listen")
        size = 3 * MiB

        responses = post_many(base, size)
    finally:
        nginx.stop()

    expected = (413, "application/json", too_large(size, limit))
    assert answers(responses) == [expected] * TRIES
