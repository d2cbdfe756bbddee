"""Inference through MOC: what MOC adds to a request, and a burst against one bulkhead.

Starts a scratch MOC on loopback (its own var/ dir, redis-server, migrated SQLite, the demo
models made into its model root and registered by a scan), gunicorn as scripts/run.sh runs it
and one device worker (a simulated GPU, thread pool), then loads the demo LM through the API.

1. Overhead, one request at a time, the same greedy generation each time (prompt, 8 tokens):
   - direct: the same model loaded by the same runtime code in this process, called directly;
   - floor: a no-op task's round trip through the device's queue and worker (device_ping),
     answered through Celery's result backend, and through the reply list inference uses;
   - MOC: POST /api/v1/model-versions/{id}/infer/ with an API key.
   MOC's added latency is MOC's p50 minus direct's p50; the target is at most 1.5 x the floor's p50.
2. Burst: --burst concurrent requests (default 500) at once against a bulkhead of
   --concurrency running + --queue waiting: every answer must be 200 or 429 (with Retry-After),
   never a 5xx.

    .venv/bin/python bench/inference_serving.py [--requests 300] [--burst 500]
        [--concurrency 4] [--queue 16] [--threads 16]

Needs redis-server and the demo extra. Loopback only; every wait is bounded; about a minute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.serving.messages import DEVICE_PING  # noqa: E402
from bench._moc import DEMO_AND_OPERATOR, QUEUE, ScratchMOC  # noqa: E402
from tests.procs import wait_until  # noqa: E402

PROMPT = {"prompt": "The fleet", "max_new_tokens": 8, "temperature": 0}

SETUP = (
    DEMO_AND_OPERATOR
    + """
print(json.dumps({"key": secret, "version": version.pk, "path": version.path}))
"""
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, values: list[float]) -> str:
    return f"| {name} | {len(values)} | {statistics.median(values):.2f} | {pct(values, 0.99):.2f} |"


class Scratch(ScratchMOC):
    def __init__(self, folder: Path, opts: argparse.Namespace) -> None:
        super().__init__(folder, SETUP)
        self.start(
            "gunicorn",
            ["gunicorn", "moc_site.wsgi:application", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"]
            + [
                "--threads",
                str(opts.threads),
                "--worker-class",
                "gthread",
                "--config",
                "deploy/gunicorn.conf.py",
            ],
        )
        self.start(
            "worker",
            ["celery", "-A", "moc_site", "worker", "-Q", QUEUE, "-n", f"{QUEUE}@%h", "-P", "threads"]
            + [
                "-c",
                str(opts.worker_threads),
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
        )
        self.wait_serving()

    def load(self) -> None:
        def placed() -> bool:
            response = self.http.post("/api/v1/placements/", json={"version": self.setup["version"]})
            return response.status_code == 201

        wait_until(placed, 60, "the device to register and take the load")

        def loaded() -> bool:
            found = self.http.get("/api/v1/placements/", params={"version": self.setup["version"]}).json()
            states = [p["state"] for p in found["results"]]
            if "failed" in states:
                raise RuntimeError(f"the load failed: {found}")
            return "loaded" in states

        wait_until(loaded, 120, "the demo LM to load")

    def profile(self, concurrency: int, queue: int) -> None:
        response = self.http.post(
            "/api/v1/serving-profiles/",
            json={"version": self.setup["version"], "max_concurrency": concurrency, "max_queue": queue},
        )
        response.raise_for_status()


def direct(path: str, count: int) -> list[float]:
    """The same model, loaded by the same runtime code, called in this process."""
    from apps.serving import runtimes

    loaded = runtimes.load(runtimes.LoadSpec(path=path, format="hf", kind="causal-lm", device="cpu"))
    times = []
    for _ in range(count):
        began = time.perf_counter()
        loaded.generate(stop=[], seed=None, deadline=None, top_p=1.0, **PROMPT)
        times.append((time.perf_counter() - began) * 1000)
    loaded.close()
    return times


def celery_app(scratch: Scratch) -> Any:
    os.environ["REDIS_URL"] = scratch.redis.url
    from moc_site.celery import app

    app.conf.update(broker_url=scratch.redis.url, result_backend=scratch.redis.url)
    return app


def celery_floor(scratch: Scratch, count: int) -> list[float]:
    """The same no-op as Celery callers usually wait for it: send, then the result backend."""
    app = celery_app(scratch)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        app.send_task(DEVICE_PING, queue=QUEUE).get(timeout=10)
        times.append((time.perf_counter() - began) * 1000)
    return times


def floor(scratch: Scratch, count: int) -> list[float]:
    """A no-op task's round trip through the device's queue and thread-pool worker, answered on a
    reply list as inference answers are."""
    app = celery_app(scratch)
    client = scratch.redis.client()
    times = []
    for _ in range(count):
        key = f"moc:reply:{uuid.uuid4().hex}"
        began = time.perf_counter()
        app.send_task(DEVICE_PING, args=[key], queue=QUEUE)
        if client.blpop([key], timeout=10) is None:
            raise RuntimeError("device_ping was not answered in 10 s")
        times.append((time.perf_counter() - began) * 1000)
    return times


def through_moc(scratch: Scratch, count: int) -> list[float]:
    url = f"/api/v1/model-versions/{scratch.setup['version']}/infer/"
    times = []
    for _ in range(count):
        began = time.perf_counter()
        response = scratch.http.post(url, json={"task": "generate", "input": PROMPT})
        times.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"MOC answered {response.status_code}: {response.text}")
    return times


def burst(scratch: Scratch, total: int) -> tuple[Counter[int], int, float]:
    url = f"{scratch.base}/api/v1/model-versions/{scratch.setup['version']}/infer/"
    headers = {"Authorization": f"Bearer {scratch.setup['key']}"}
    body = {"task": "generate", "input": PROMPT}

    def one(_: int) -> tuple[int, bool]:
        with httpx.Client(timeout=120) as client:
            response = client.post(url, json=body, headers=headers)
        return response.status_code, response.status_code != 429 or "Retry-After" in response.headers

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=total) as pool:
        results = list(pool.map(one, range(total)))
    seconds = time.perf_counter() - began
    statuses = Counter(status for status, _ in results)
    missing_retry_after = sum(1 for _, ok in results if not ok)
    return statuses, missing_retry_after, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker (2 workers)")
    parser.add_argument("--worker-threads", type=int, default=4, help="the device worker's thread pool")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moc-bench-") as folder:
        scratch = Scratch(Path(folder), opts)
        try:
            scratch.load()
            warm = min(30, opts.requests)
            through_moc(scratch, warm)
            floor(scratch, warm)
            celery_floor(scratch, warm)
            results = {
                "direct (same runtime, in process)": direct(scratch.setup["path"], opts.requests),
                "floor: no-op task, Celery result backend": celery_floor(scratch, opts.requests),
                "floor: no-op task, reply list": floor(scratch, opts.requests),
                "MOC: POST .../infer/ (API key)": through_moc(scratch, opts.requests),
            }
            print("\n## Overhead: one request at a time, generate 8 tokens greedy (ms)\n")
            print("| path | n | p50 | p99 |\n| --- | ---: | ---: | ---: |")
            for name, values in results.items():
                print(row(name, values))
            d, celery, reply, m = (statistics.median(v) for v in results.values())
            added = m - d
            print(f"\nMOC added at p50: {added:.2f} ms (target: at most 1.5 x a no-op round trip), that is")
            print(f"{added / celery:.2f} x the result-backend round trip,", end=" ")
            print(f"{added / reply:.2f} x the reply list's")

            scratch.profile(opts.concurrency, opts.queue)
            statuses, missing, seconds = burst(scratch, opts.burst)
            bulkhead = f"bulkhead {opts.concurrency} running + {opts.queue} waiting"
            print(f"\n## Burst: {opts.burst} concurrent requests, {bulkhead}\n")
            print("| status | count |\n| --- | ---: |")
            for status, count in sorted(statuses.items()):
                print(f"| {status} | {count} |")
            errors = sum(count for status, count in statuses.items() if status >= 500)
            print(f"\n5xx: {errors}; 429 without Retry-After: {missing}; took {seconds:.1f} s")
        finally:
            scratch.stop()


if __name__ == "__main__":
    main()
