"""Real service processes for the tests: redis-server, Celery workers, uvicorn.

Each starts on a free loopback port with its own temporary directory and is stopped by
the fixture that started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A redis-server configured as MOC's own (append-only, noeviction) in a temp dir."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian package redis-server); scripts/test.sh installs it"
            )
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                str(ROOT / "deploy" / "redis" / "redis.conf"),
                "--port",
                str(self.port),
                "--dir",
                str(self.workdir),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server to answer PING")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)


class Process:
    """A child process running the project (Celery, uvicorn) with the test environment."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a power cut would: no shutdown handlers run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def project_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "moc_site.settings"}, **extra)
    return env


def python() -> str:
    return sys.executable


def nginx_binary() -> str:
    # Debian keeps nginx in /usr/sbin, which is not on every PATH.
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        raise RuntimeError("nginx is not installed (Debian package nginx); scripts/test.sh installs it")
    return binary


def nginx_command(prefix: Path, conf: Path) -> list[str]:
    """nginx in the foreground with `conf`, writing under `prefix`, as scripts/run.sh runs it."""
    return [nginx_binary(), "-e", "stderr", "-p", f"{prefix}/", "-c", str(conf)]


def nginx_render(nginx_dir: Path, env: dict[str, str], *, listen: int, web: int, ws: int) -> Path:
    """The run command's nginx configuration (`manage.py nginx_conf`, as scripts/run.sh renders it)
    in `nginx_dir`, listening on `listen` in front of gunicorn on `web` and uvicorn on `ws`."""
    subprocess.run(
        [
            python(),
            "manage.py",
            "nginx_conf",
            str(nginx_dir),
            "--listen",
            f"127.0.0.1:{listen}",
            "--web",
            f"127.0.0.1:{web}",
            "--ws",
            f"127.0.0.1:{ws}",
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return nginx_dir / "nginx.conf"


def uvicorn_command(port: int, *extra: str) -> list[str]:
    """MOC's ASGI process (websockets and the data plane) on `port`, quiet but for warnings."""
    return [
        python(),
        "-m",
        "uvicorn",
        "moc_site.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]


def gunicorn_command(port: int) -> list[str]:
    """MOC's web process as scripts/run.sh starts it (2 processes x 4 threads), on `port`."""
    return [
        python(),
        "-m",
        "gunicorn",
        "moc_site.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--worker-class",
        "gthread",
        "--config",
        "deploy/gunicorn.conf.py",
    ]
