"""Why the API is served by gunicorn and not through ASGI: the same MOC endpoints, measured.

Starts a scratch MOC (its own var/ dir and redis-server on free loopback ports), then serves
it with gunicorn (gthread, 2 workers x 4 threads, as scripts/run.sh does) and with uvicorn
running the ASGI application (2 workers), one after the other, and drives each with wrk for
a fixed time. Prints requests/s and latency percentiles per server and endpoint.

    .venv/bin/python bench/web_servers.py [--seconds 10] [--connections 32]

Needs wrk (Debian package `wrk`) and redis-server. Loopback only; every run is bounded.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import Process, RedisServer, free_port, project_env, wait_until  # noqa: E402

SERVERS = {
    "gunicorn (WSGI, gthread 2x4)": lambda port: [
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
        "--log-level",
        "warning",
    ],
    "uvicorn (ASGI, 2 workers)": lambda port: [
        "uvicorn",
        "moc_site.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ],
}
ENDPOINTS = {"/healthz": False, "/api/v1/jobs/?page_size=20": True}


def prepare(env: dict[str, str]) -> str:
    """Migrate the scratch database, add 50 jobs and an admin key; returns the key."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from apps.core import roles, services\n"
        "from apps.core.domain.roles import Role\n"
        "from apps.jobs.models import Job\n"
        "user = get_user_model().objects.create_user('bench', password='bench-pass-1')\n"
        "roles.set_role(user, Role.ADMIN)\n"
        "Job.objects.bulk_create([Job(kind='selftest') for _ in range(50)])\n"
        "_, key = services.api_key_create(\n"
        "    owner=user, name='bench', role=Role.VIEWER, acting_role=Role.ADMIN\n"
        ")\n"
        "print(key)\n"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def wrk(url: str, seconds: int, connections: int, key: str | None) -> dict[str, float]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if key:
        args[1:1] = ["-H", f"Authorization: Bearer {key}"]
    text = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", text).groups()
        figures[f"p{pct}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    figures["errors"] = int(non2xx.group(1)) if non2xx else 0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="moc-bench-") as scratch:
        redis = RedisServer(Path(scratch) / "redis")
        redis.start()
        env = project_env(
            MOC_VAR_DIR=scratch,
            REDIS_URL=redis.url,
            MOC_THROTTLE_API_KEY="100000000/min",
            MOC_THROTTLE_ANON="100000000/min",
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        )
        try:
            key = prepare(env)
            print(f"{'server':32} {'endpoint':30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
            for name, command in SERVERS.items():
                port = free_port()
                server = Process(command(port), env, Path(scratch) / "server.log")
                server.start()
                try:
                    base = f"http://127.0.0.1:{port}"
                    wait_until(
                        lambda b=base: httpx.get(f"{b}/healthz", timeout=1).status_code == 200, 60, name
                    )
                    for path, needs_key in ENDPOINTS.items():
                        wrk(base + path, 2, opts.connections, key if needs_key else None)  # warm-up
                        f = wrk(base + path, opts.seconds, opts.connections, key if needs_key else None)
                        print(
                            f"{name:32} {path:30} {f['rps']:9.0f} {f['p50_ms']:8.1f} {f['p99_ms']:8.1f} "
                            f"{f['errors']:8d}",
                            flush=True,
                        )
                finally:
                    server.stop()
                    time.sleep(1)
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
