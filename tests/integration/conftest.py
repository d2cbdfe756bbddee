"""Real processes for integration tests: Celery workers and an ASGI server.

They run the project's own code against the session redis-server and the test database
(a file, so another process sees it), which is why these tests use transactional_db.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.procs import Process, RedisServer, free_port, project_env, python, uvicorn_command, wait_until


def database_env() -> dict[str, str]:
    """Environment that points a child process at the test database this process uses."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"MOC_SQLITE_PATH": str(settings_dict["NAME"])}
    user, password = settings_dict["USER"], settings_dict["PASSWORD"]
    host, port, name = settings_dict["HOST"], settings_dict["PORT"], settings_dict["NAME"]
    return {"DATABASE_URL": f"postgres://{user}:{password}@{host}:{port}/{name}"}


def worker_env(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    defaults = {
        "REDIS_URL": redis_server.url,
        "MOC_WORKER_HEARTBEAT_S": "1",
        # Tests that want a scan ask for one; an unasked first scan would add tasks to theirs.
        "MOC_REGISTRY_SCAN_ON_START": "false",
        "MOC_VAR_DIR": str(settings.VAR_DIR),
    }
    return project_env(**{**defaults, **database_env(), **extra})


@pytest.fixture
def start_worker(
    redis_server: RedisServer, transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., Process]]:
    """Start a real `celery worker` consuming the given queues; waits for its heartbeat."""
    started: list[Process] = []

    def start(
        queues: str = "default", pool: str = "prefork", name: str = "itest", concurrency: int = 1, **env: str
    ) -> Process:
        args = [
            python(),
            "-m",
            "celery",
            "-A",
            "moc_site",
            "worker",
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
            "-I",
            "tests.integration.crashing_tasks",
        ]
        proc = Process(
            args, worker_env(redis_server, MOC_DEVICE_QUEUES=queues, **env), tmp_path / f"{name}.log"
        )
        proc.start()
        started.append(proc)

        def registered() -> bool:
            if not proc.alive():
                raise RuntimeError(f"worker exited early:\n{proc.output()[-3000:]}")
            keys = redis_server.client().keys(f"moc:worker:{name}@*")
            return bool(keys) and name in json.loads(redis_server.client().get(keys[0]))["hostname"]

        wait_until(registered, 60, f"worker {name} to send its first heartbeat")
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def asgi_server(redis_server: RedisServer, transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """uvicorn serving moc_site.asgi (websockets, and HTTP for browser tests) on a free port."""
    import httpx

    port = free_port()
    args = uvicorn_command(port, "--ws", "websockets")
    proc = Process(args, worker_env(redis_server), tmp_path / "uvicorn.log")
    proc.start()
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 60, "uvicorn to serve /healthz"
    )
    yield base
    proc.stop()
