"""The data plane (OpenAI's API under /v1/) measured as a client meets it.

Starts a scratch MOC on loopback (bench/_moc.py: redis-server, migrated SQLite, the demo models
registered by a scan, one node of one simulated GPU) and the run command's processes for it:
gunicorn, uvicorn (moc_site.asgi, which serves /v1/) and the device worker, with nginx in front
configured by `manage.py nginx_conf` as scripts/run.sh does (without nginx installed, /v1/ is
asked of uvicorn directly; the output says which). A deployment of the demo LM is made, pinned,
with a bulkhead wide enough for the load below.

1. Wake on request, cold: the first request to the deployment, whose release has no replica yet,
   waits for the load (a fresh worker: it imports the runtime too); then again after its replica
   was unloaded (the worker warm, the model not).
2. Added latency, one request at a time, a non-streamed completion of 8 tokens, greedy:
   - in process: the same runtime code (apps.serving.runtimes) holding the same model, here;
   - floor: what any request over this transport costs, in two halves: an HTTP round trip to the
     data plane that ends there (GET /v1/models, answered from its cache), and the direct
     channel's no-op round trip to the device worker (apps.serving.inference.aio.noop);
   - MOC: POST /v1/completions, and the older POST /api/v1/deployments/{name}/infer/ (Celery).
   MOC added = MOC's p50 - in process p50; the target is at most 1.5 x the floor's p50.
3. Time to first token, streamed: the first content chunk of POST /v1/completions (stream) against
   the in-process runtime's first token; what MOC adds at p50 and p99.
4. --clients (default 200) concurrent streaming clients (asyncio + httpx): all must complete;
   their inter-token latency (p50, p99), and the uvicorn process's memory (RSS) and threads
   before, during (the most seen) and after.

    .venv/bin/python bench/dataplane.py [--requests 200] [--clients 200] [--tokens 32]

Needs redis-server and the demo extra (and nginx for the proxied figures). Loopback only; every
wait is bounded; a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._moc import DEMO_AND_OPERATOR, QUEUE, ScratchMOC  # noqa: E402
from tests.procs import (  # noqa: E402
    free_port,
    gunicorn_command,
    nginx_binary,
    nginx_command,
    nginx_render,
    python,
    uvicorn_command,
    wait_until,
)

NAME = "bench-lm"
PROMPT = "The fleet"
GREEDY_8 = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}

SETUP = (
    DEMO_AND_OPERATOR
    + """
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
deployment = Deployment.objects.create(
    name="@NAME@", state=DeploymentState.ACTIVE, pinned=True, max_concurrency=512, max_queue=512,
    wake_timeout_s=300,
)
release = Release.objects.create(
    deployment=deployment, model_version=version, state=ReleaseState.PROMOTED, traffic_percent=100
)
deployment.current_release = release
deployment.save(update_fields=["current_release"])
print(json.dumps({"key": secret, "version": version.pk, "path": version.path, "release": release.pk}))
""".replace("@NAME@", NAME)
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, values: list[float]) -> str:
    return f"| {name} | {len(values)} | {statistics.median(values):.2f} | {pct(values, 0.99):.2f} |"


class Scratch(ScratchMOC):
    """The scratch MOC with gunicorn, uvicorn, the device worker and (where installed) nginx."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, SETUP)
        # Requests of the 200-client load wait their turn for the worker's threads: give them time.
        self.env["MOC_SERVING_TIMEOUT_S"] = "120"
        self.start("gunicorn", gunicorn_command(self.port))
        self.uvicorn_port = free_port()
        self.start(
            "uvicorn",
            uvicorn_command(self.uvicorn_port, "--ws-per-message-deflate", "false", "--lifespan", "off"),
        )
        self.uvicorn = psutil.Process(self.processes[-1].proc.pid)  # type: ignore[union-attr]
        self.start(
            "worker",
            [python(), "-m", "celery", "-A", "moc_site", "worker", "-Q", QUEUE, "-n", f"{QUEUE}@%h"]
            + ["-P", "threads", "-c", "4", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        )
        self.direct = f"http://127.0.0.1:{self.uvicorn_port}"
        self.proxied = self.direct
        self.via = "uvicorn directly (nginx is not installed)"
        try:
            nginx_binary()
        except RuntimeError:
            pass
        else:
            port = free_port()
            conf = nginx_render(folder / "nginx", self.env, listen=port, web=self.port, ws=self.uvicorn_port)
            self.start("nginx", nginx_command(folder / "nginx", conf))
            self.proxied, self.via = f"http://127.0.0.1:{port}", "nginx (the run command's config)"
        self.wait_serving()
        wait_until(
            lambda: httpx.get(f"{self.proxied}/v1/models", timeout=2).status_code == 401, 60, "/v1/ to answer"
        )
        wait_until(lambda: self.http.get("/api/v1/devices/").json()["count"] == 1, 60, "the worker's device")
        self.headers = {"Authorization": f"Bearer {self.setup['key']}"}
        self.v1 = httpx.Client(base_url=f"{self.proxied}/v1", headers=self.headers, timeout=300)

    def complete(self, body: dict[str, Any]) -> httpx.Response:
        response = self.v1.post("/completions", json={"model": NAME, **body})
        if response.status_code != 200:
            raise RuntimeError(f"/v1/completions answered {response.status_code}: {response.text[:500]}")
        return response

    def placement(self) -> dict[str, Any]:
        found = self.http.get("/api/v1/placements/", params={"version": self.setup["version"]}).json()
        (loaded,) = [p for p in found["results"] if p["state"] == "loaded"]
        return loaded

    def unload(self) -> None:
        placement = self.placement()
        self.http.post(f"/api/v1/placements/{placement['id']}/unload/", json={}).raise_for_status()

        def unloaded() -> bool:
            return self.http.get(f"/api/v1/placements/{placement['id']}/").json()["state"] == "unloaded"

        wait_until(unloaded, 60, "the replica to unload")
        # The data plane hears of it at once (invalidation); its cache would forget it within
        # MOC_DATAPLANE_CACHE_S anyway: wait that long, so the next request surely finds none.
        time.sleep(6)


# --- 1. wake on request --------------------------------------------------------------------


def wake(scratch: Scratch) -> float:
    began = time.perf_counter()
    scratch.complete(GREEDY_8)
    return time.perf_counter() - began


# --- 2. added latency ----------------------------------------------------------------------


def in_process(path: str, count: int) -> tuple[list[float], list[float]]:
    """The same model and runtime code called here: each call's time and its first token's (ms)."""
    from apps.serving import runtimes

    loaded = runtimes.load(runtimes.LoadSpec(path=path, format="hf", kind="causal-lm", device="cpu"))
    whole, first = [], []
    for _ in range(count):
        marks: list[float] = []

        def heard(*_: object, marks: list[float] = marks) -> None:
            marks.append(time.perf_counter())

        began = time.perf_counter()
        loaded.complete(
            prompts=[PROMPT],
            max_tokens=8,
            temperature=0.0,
            top_p=1.0,
            n=1,
            stop=[],
            seed=None,
            echo=False,
            logprobs=None,
            deadline=None,
            on_delta=heard,
        )
        whole.append((time.perf_counter() - began) * 1000)
        first.append((marks[0] - began) * 1000)
    loaded.close()
    return whole, first


def timed(count: int, call: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def models_round_trip(scratch: Scratch, base: str, count: int) -> list[float]:
    with httpx.Client(base_url=base, headers=scratch.headers, timeout=30) as client:

        def ask() -> None:
            if client.get("/v1/models").status_code != 200:
                raise RuntimeError("GET /v1/models failed")

        return timed(count, ask)


def noop_round_trip(scratch: Scratch, count: int) -> list[float]:
    """The direct channel's no-op to the device worker, as the data plane's process sends it."""
    import redis.asyncio

    from apps.serving.inference import aio

    placement = scratch.placement()
    target = aio.Target(placement_id=placement["id"], queue=QUEUE, device="sim")

    async def run() -> list[float]:
        client = redis.asyncio.Redis.from_url(scratch.redis.url, socket_timeout=10)
        try:
            return [await aio.noop(client=client, target=target, timeout_s=10) * 1000 for _ in range(count)]
        finally:
            await client.aclose()

    return asyncio.run(run())


def flow(scratch: Scratch, count: int) -> tuple[list[float], list[float]]:
    """The data plane's flow alone (apps.serving.inference.aio.stream: the worker's liveness, the
    bulkhead, the breaker, the direct channel), no HTTP, no auth, no routing: each request's time,
    and the compute time its worker reported (ms)."""
    import redis.asyncio

    from apps.models.models import ModelVersion
    from apps.serving.domain import wire
    from apps.serving.inference import aio, limits_for

    version = ModelVersion.objects.select_related("model", "serving").get(pk=scratch.setup["version"])
    label, limits = str(version), limits_for(version)
    target = aio.Target(placement_id=scratch.placement()["id"], queue=QUEUE, device="sim")
    params = {"prompts": [PROMPT], "max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "n": 1}
    params |= {"stop": [], "seed": None, "echo": False, "logprobs": None}

    async def run() -> tuple[list[float], list[float]]:
        client = redis.asyncio.Redis.from_url(scratch.redis.url, socket_timeout=10)
        whole, compute = [], []
        try:
            for _ in range(count):
                began = time.perf_counter()
                frames = aio.stream(
                    client=client, version_id=version.pk, version_label=label, targets=[target],
                    op=wire.Op.COMPLETE, params=params, stream=False, limits=limits,
                    bulkhead="bench",
                )  # fmt: skip
                done = [frame async for frame in frames][-1]
                whole.append((time.perf_counter() - began) * 1000)
                compute.append(done["figures"]["compute_ms"])
        finally:
            await client.aclose()
        return whole, compute

    return asyncio.run(run())


def old_path(scratch: Scratch, count: int) -> list[float]:
    body = {"task": "generate", "input": {"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0}}
    with httpx.Client(base_url=scratch.proxied, headers=scratch.headers, timeout=30) as client:

        def ask() -> None:
            response = client.post(f"/api/v1/deployments/{NAME}/infer/", json=body)
            if response.status_code != 200:
                raise RuntimeError(
                    f"the deployment endpoint answered {response.status_code}: {response.text}"
                )

        return timed(count, ask)


# --- 3. time to first token ----------------------------------------------------------------


def first_tokens(scratch: Scratch, count: int) -> list[float]:
    """ms from sending a streamed completion to its first content chunk."""
    body = {"model": NAME, **GREEDY_8, "stream": True}
    times = []
    for _ in range(count):
        began = time.perf_counter()
        first = None
        with scratch.v1.stream("POST", "/completions", json=body) as response:
            for line in response.iter_lines():
                if first is None and line.startswith("data: {") and '"text":""' not in line:
                    first = (time.perf_counter() - began) * 1000
        if response.status_code != 200 or first is None:
            raise RuntimeError(f"the stream answered {response.status_code} without a token")
        times.append(first)
    return times


# --- 4. many streams at once ---------------------------------------------------------------


class Sampler:
    """The uvicorn process's RSS (MiB) and threads, sampled every 0.1 s while it runs."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> tuple[float, int]:
        return self.process.memory_info().rss / 2**20, self.process.num_threads()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(self.now())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def streams(base: str, headers: dict[str, str], clients: int, tokens: int) -> dict[str, Any]:
    """`clients` streamed completions at once; each one's gaps between content chunks (ms)."""
    body = {"model": NAME, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True}
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)

    async def one(client: httpx.AsyncClient) -> tuple[bool, list[float], str]:
        gaps, last, done = [], None, False
        try:
            async with client.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    return False, [], f"{response.status_code}: {(await response.aread())[:200]!r}"
                async for line in response.aiter_lines():
                    if line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: {") and '"error"' in line:
                        return False, gaps, line[:200]
                    elif line.startswith("data: {"):
                        now = time.perf_counter()
                        if last is not None:
                            gaps.append((now - last) * 1000)
                        last = now
        except httpx.HTTPError as exc:
            return False, gaps, repr(exc)
        return done, gaps, "" if done else "no [DONE]"

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300, limits=limits) as client:
        began = time.perf_counter()
        results = await asyncio.gather(*(one(client) for _ in range(clients)))
        seconds = time.perf_counter() - began
    failures = [why for ok, _, why in results if not ok]
    gaps = [g for _, client_gaps, _ in results for g in client_gaps]
    return {"ok": clients - len(failures), "failures": failures, "gaps": gaps, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=32, help="tokens each concurrent stream asks for")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moc-bench-") as folder:
        scratch = Scratch(Path(folder))
        # This process reads the scratch MOC's database and Redis (the no-op's target, its queue).
        os.environ.update(scratch.env)
        import django

        django.setup()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # Django's logging made it say every request
        try:
            print(f"\n/v1/ asked through {scratch.via}\n")
            print("## Wake on request: the first request's answer, the demo LM not loaded (s)\n")
            print(f"- fresh worker (loads the runtime too): {wake(scratch):.2f}")
            scratch.unload()
            print(f"- after its replica was unloaded (worker warm): {wake(scratch):.2f}")

            count, warm = opts.requests, min(30, opts.requests)
            for call in (
                lambda: scratch.complete(GREEDY_8),
                lambda: models_round_trip(scratch, scratch.proxied, 1),
            ):
                timed(warm, call)
            noop_round_trip(scratch, warm)
            old_path(scratch, warm)
            whole, first = in_process(scratch.setup["path"], count)
            http_floor = models_round_trip(scratch, scratch.proxied, count)
            noop = noop_round_trip(scratch, count)
            floor = [h + n for h, n in zip(http_floor, noop, strict=True)]
            flow(scratch, warm)
            alone, compute = flow(scratch, count)
            moc = timed(count, lambda: scratch.complete(GREEDY_8))
            with httpx.Client(base_url=f"{scratch.direct}/v1", headers=scratch.headers, timeout=30) as direct:
                moc_direct = timed(
                    count,
                    lambda: direct.post("/completions", json={"model": NAME, **GREEDY_8}).raise_for_status(),
                )
            older = old_path(scratch, count)
            print("\n## Added latency: one request at a time, a completion of 8 tokens, greedy (ms)\n")
            print("| path | n | p50 | p99 |\n| --- | ---: | ---: | ---: |")
            print(row("in process (same runtime and model)", whole))
            print(row("floor, HTTP half: GET /v1/models (cached)", http_floor))
            print(row("floor, worker half: direct channel no-op", noop))
            print(row("floor: the two halves, summed per pair", floor))
            print(row("the worker's compute (its done frame's figures)", compute))
            print(row("the data plane's flow alone (aio.stream, no HTTP)", alone))
            print(row("MOC: POST /v1/completions", moc))
            print(row("MOC: POST /v1/completions to uvicorn directly", moc_direct))
            print(row("older: POST /api/v1/deployments/{name}/infer/", older))
            added = statistics.median(moc) - statistics.median(whole)
            floor_p50 = statistics.median(floor)
            old_added = statistics.median(older) - statistics.median(whole)
            print(
                f"\nMOC added at p50: {added:.2f} ms = {added / floor_p50:.2f} x the floor's p50 "
                f"({floor_p50:.2f} ms; target at most 1.5 x)"
            )
            print(
                f"the older endpoint added {old_added:.2f} ms = {old_added / floor_p50:.2f} x the same floor"
            )

            ttft = first_tokens(scratch, count)
            print("\n## Time to first token, streamed (ms)\n")
            print("| path | n | p50 | p99 |\n| --- | ---: | ---: | ---: |")
            print(row("in process: the runtime's first token", first))
            print(row("MOC: first content chunk of a streamed /v1/completions", ttft))
            base_ttft = statistics.median(first)
            print(
                f"\nMOC added to the first token: p50 {statistics.median(ttft) - base_ttft:.2f} ms, "
                f"p99 {pct(ttft, 0.99) - base_ttft:.2f} ms (over the in-process p50)"
            )

            before = Sampler(scratch.uvicorn).now()
            with Sampler(scratch.uvicorn) as during:
                load = asyncio.run(streams(scratch.proxied, scratch.headers, opts.clients, opts.tokens))
            time.sleep(2)  # what the streams held is let go
            after = Sampler(scratch.uvicorn).now()
            peak = (max(s[0] for s in during.samples), max(s[1] for s in during.samples))
            gaps = load["gaps"]
            print(f"\n## {opts.clients} concurrent streaming clients, {opts.tokens} tokens each\n")
            print(f"completed: {load['ok']} of {opts.clients} in {load['seconds']:.1f} s")
            for why, times in Counter(load["failures"]).most_common(5):
                print(f"- failed {times} x: {why}")
            if load["failures"]:
                for name in ("uvicorn", "nginx", "worker"):
                    print(f"\n{name}.log ends:\n" + (Path(folder) / f"{name}.log").read_text()[-3000:])
            print(
                f"inter-token latency (ms): p50 {statistics.median(gaps):.2f}, p99 {pct(gaps, 0.99):.2f}, "
                f"max {max(gaps):.2f} over {len(gaps)} gaps"
            )
            print("\n| uvicorn process | before | during (most) | after |\n| --- | ---: | ---: | ---: |")
            print(f"| RSS (MiB) | {before[0]:.0f} | {peak[0]:.0f} | {after[0]:.0f} |")
            print(f"| threads | {before[1]} | {peak[1]} | {after[1]} |")
        finally:
            scratch.stop()


if __name__ == "__main__":
    main()
