"""Live telemetry fan-out: MOC's /ws/telemetry/ against a bare ASGI relay, 1,000 clients each.

Starts a scratch MOC (its own var/ dir and redis-server on free loopback ports) and serves,
one after the other, the bare relay (bench/ws_relay_bare.py) and MOC's ASGI application with
one uvicorn process each. 1,000 websocket clients in two processes (bench/_ws_load.py)
connect, MOC's as a logged-in viewer; then R fake nodes publish one telemetry message each
per second through apps.fleet.telemetry.publish, so every second brings R x 1,000
deliveries, for R rising step by step. Each step is a short warm-up and a measured window;
it holds when the p99 lag (receipt minus the message's "at") is at most 250 ms and no
delivery is lost, and a server's ladder ends at its first step that does not hold.

Then MOC alone: 1,000 clients and one node of 8 simulated GPUs sampled at 1 Hz by a real
Celery device worker (its agent publishes), with lag and losses over --scenario-seconds.

    .venv/bin/python bench/telemetry_fanout.py [--rates 2,5,10,...,80] [--seconds 10]
        [--clients 1000] [--servers bare,moc] [--scenario-seconds 30] [--deflate]

Needs redis-server. Loopback only; every wait is bounded and the default run takes about
seven minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.fleet import telemetry  # noqa: E402
from apps.fleet.devices.base import SimLoad  # noqa: E402
from apps.fleet.devices.sim import SimBackend  # noqa: E402
from apps.fleet.domain.capacity import GiB  # noqa: E402
from tests.procs import Process, RedisServer, free_port, project_env, python, wait_until  # noqa: E402

P99_LIMIT_MS = 250.0
DRAIN_S = 2.0  # after a window, for the last messages to arrive before the clients report
CLIENT_PROCESSES = 2
DEVICES_PER_NODE = 4
SCENARIO_NODE = "bench"
SCENARIO_QUEUE = f"gpu.{SCENARIO_NODE}.0"
SCENARIO_DEVICES = "sim:8x24GiB"
# What the fake nodes' simulated GPUs carry, so their figures move the way a busy node's do.
LOADS = {
    0: SimLoad(placed_bytes=18 * GiB, running_jobs=1),
    1: SimLoad(placed_bytes=9 * GiB, requests_per_s=12.0),
    2: SimLoad(placed_bytes=4 * GiB, requests_per_s=3.5),
}


@dataclass(frozen=True)
class Server:
    name: str
    app: str
    path: str
    extra: tuple[str, ...]
    logged_in: bool


SERVERS = {
    "bare": Server("bare relay", "bench.ws_relay_bare:app", "/", (), False),
    "moc": Server("MOC", "moc_site.asgi:application", "/ws/telemetry/", ("--lifespan", "off"), True),
}


def prepare(env: dict[str, str]) -> str:
    """Migrate the scratch database and log a viewer in; returns the session cookie."""
    subprocess.run([python(), "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from django.test import Client\n"
        "from apps.core import roles\n"
        "from apps.core.domain.roles import Role\n"
        "user = get_user_model().objects.create_user('viewer', password='bench-pass-1')\n"
        "roles.set_role(user, Role.VIEWER)\n"
        "client = Client()\n"
        "client.force_login(user)\n"
        "print(client.cookies['sessionid'].value)\n"
    )
    out = subprocess.run(
        [python(), "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return "sessionid=" + out.stdout.strip().splitlines()[-1]


class FakeNode:
    """A node of simulated GPUs whose messages the bench publishes itself."""

    def __init__(self, name: str, node_id: int, devices: int) -> None:
        self.name, self.node_id = name, node_id
        self.backend = SimBackend(name, [(devices, 24 * GiB)], load=lambda: LOADS)
        self.infos = self.backend.devices()

    def message(self, now: float) -> dict[str, Any]:
        devices = [
            {
                "id": self.node_id * 100 + info.index,
                "name": info.name,
                "kind": info.kind,
                "simulated": info.simulated,
                "health": "unhealthy" if reading.error else "healthy",
                **reading.as_message(),
            }
            for info, reading in zip(self.infos, self.backend.sample(now), strict=True)
        ]
        return telemetry.telemetry_message(
            node=self.name, node_id=self.node_id, at=now, backend="sim", devices=devices
        )


def publish_for(client: redis.Redis, nodes: list[FakeNode], seconds: float) -> None:
    """Every node once a second, spread evenly over the second, for `seconds`."""
    interval = 1.0 / len(nodes)
    start = time.monotonic()
    for tick in range(round(seconds * len(nodes))):
        delay = start + tick * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        telemetry.publish(client, nodes[tick % len(nodes)].message(time.time()))
    time.sleep(max(0.0, start + seconds - time.monotonic()))


def seqs(client: redis.Redis, names: list[str]) -> dict[str, int]:
    values = client.mget([telemetry.SEQ_KEY_PREFIX + name for name in names])
    return {name: int(value or 0) for name, value in zip(names, values, strict=True)}


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def read_line(stream: IO[str], timeout: float, what: str) -> dict[str, Any]:
    ready, _, _ = select.select([stream], [], [], timeout)
    line = stream.readline() if ready else ""
    if not line:
        raise RuntimeError(f"no answer from the websocket clients ({what}) within {timeout:.0f}s")
    return json.loads(line)


class Clients:
    """The client processes for one server, and what they report."""

    def __init__(self, url: str, total: int, cookie: str, origin: str, deflate: bool, logs: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        for number in range(CLIENT_PROCESSES):
            args = [python(), str(ROOT / "bench" / "_ws_load.py"), url, "--origin", origin]
            args += ["--clients", str(total // CLIENT_PROCESSES + (number < total % CLIENT_PROCESSES))]
            args += ["--cookie", cookie] if cookie else []
            args += ["--deflate"] if deflate else []
            with (logs / f"clients-{number}.log").open("ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        args,
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                        start_new_session=True,
                    )
                )
        try:
            answers = [read_line(p.stdout, 180, "connecting") for p in self.procs]
        except BaseException:
            self.stop()
            raise
        self.connected = sum(a["connected"] for a in answers)
        self.failed = sum(a["failed"] for a in answers)
        self.error = next((a["error"] for a in answers if a["error"]), "")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def report(self, ranges: dict[str, list[int]]) -> dict[str, Any]:
        """What every client received within `ranges` since the last report, merged."""
        for proc in self.procs:
            proc.stdin.write(json.dumps({"ranges": ranges}) + "\n")
            proc.stdin.flush()
        answers = [read_line(p.stdout, 60, "report") for p in self.procs]
        hist: Counter[int] = Counter()
        for answer in answers:
            hist.update({int(k): v for k, v in answer["lag_hist"].items()})
        return {
            "received": sum(a["received"] for a in answers),
            "duplicates": sum(a["duplicates"] for a in answers),
            "hist": hist,
            "max_ms": max(a["max_ms"] for a in answers),
            "closed": sum(a["closed"] for a in answers),
            "close_codes": sum((Counter(a["close_codes"]) for a in answers), Counter()),
            "other": sum((Counter(a["other"]) for a in answers), Counter()),
        }

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def percentile(hist: Counter[int], q: float) -> float:
    """The q-quantile of a histogram of 0.1 ms buckets, in ms."""
    rank = math.ceil(q * sum(hist.values()))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket / 10
    return 0.0


@dataclass(frozen=True)
class Step:
    label: str
    target: float
    achieved: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    cpu: dict[str, float]
    notes: str

    @property
    def holds(self) -> bool:
        return self.p99_ms <= P99_LIMIT_MS and self.lost == 0


def header(watched: list[str]) -> str:
    cpus = "".join(f"{name + ' CPU%':>13}" for name in watched)
    return (
        f"{'step':>10} {'target/s':>9} {'deliv/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'lost':>8}{cpus}  holds"
    )


def row(step: Step) -> str:
    cpus = "".join(f"{value:13.1f}" for value in step.cpu.values())
    return (
        f"{step.label:>10} {step.target:9.0f} {step.achieved:9.0f} {step.p50_ms:8.1f} {step.p99_ms:8.1f} "
        f"{step.max_ms:8.1f} {step.lost:8d}{cpus}  {'yes' if step.holds else 'NO'} {step.notes}"
    )


class Bench:
    """One scratch MOC and its Redis, for every server and scenario of a run."""

    def __init__(self, scratch: Path, opts: argparse.Namespace) -> None:
        self.scratch, self.opts = scratch, opts
        self.redis = RedisServer(scratch / "redis")
        self.redis.start()
        (scratch / "prometheus").mkdir()
        self.client = self.redis.client()
        self.env = project_env(
            MOC_VAR_DIR=str(scratch),
            REDIS_URL=self.redis.url,
            # As scripts/run.sh runs MOC: every process's metrics go to files for /metrics.
            PROMETHEUS_MULTIPROC_DIR=str(scratch / "prometheus"),
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        )
        self.cookie = prepare(self.env)

    def serve(self, server: Server) -> tuple[Process, str]:
        port = free_port()
        command = ["uvicorn", server.app, "--host", "127.0.0.1", "--port", str(port)]
        command += ["--ws", self.opts.ws, "--log-level", "warning", *server.extra]
        process = Process(command, self.env, self.scratch / f"{server.name}.log")
        process.start()

        def listening() -> bool:
            if not process.alive():
                raise RuntimeError(f"{server.name} exited:\n{process.output()[-3000:]}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_until(listening, 60, f"{server.name} to listen")
        return process, f"127.0.0.1:{port}"

    def connect(self, server: Server, address: str) -> Clients:
        clients = Clients(
            f"ws://{address}{server.path}",
            self.opts.clients,
            self.cookie if server.logged_in else "",
            f"http://{address}",
            self.opts.deflate,
            self.scratch,
        )
        print(
            f"  {clients.connected} clients connected"
            + (f", {clients.failed} refused or failed: {clients.error}" if clients.failed else ""),
            flush=True,
        )
        return clients

    def measure(
        self,
        label: str,
        names: list[str],
        drive: Callable[[float], None],
        clients: Clients,
        watched: dict[str, list[int]],
        seconds: float,
        per_second: float,
    ) -> Step:
        """Warm up, then measure one window: lag, losses and CPU while `drive` runs."""
        drive(self.opts.warmup)
        clients.report({})  # forget the warm-up's messages
        first = seqs(self.client, names)
        cpu_before = {name: cpu_seconds(pids) for name, pids in watched.items()}
        started = time.monotonic()
        drive(seconds)
        wall = time.monotonic() - started
        cpu = {name: (cpu_seconds(pids) - cpu_before[name]) / wall * 100 for name, pids in watched.items()}
        last = seqs(self.client, names)
        time.sleep(DRAIN_S)
        got = clients.report({n: [first[n] + 1, last[n]] for n in names if last[n] > first[n]})
        expected = sum(last[n] - first[n] for n in names) * clients.connected
        unique = got["received"] - got["duplicates"]
        notes = [f"{k}={v}" for k, v in sorted(got["other"].items())]
        if got["closed"]:
            notes.append(f"closed={dict(got['close_codes'])}")
        if got["duplicates"]:
            notes.append(f"duplicates={got['duplicates']}")
        return Step(
            label=label,
            target=per_second * clients.connected,
            achieved=unique / wall,
            p50_ms=percentile(got["hist"], 0.50),
            p99_ms=percentile(got["hist"], 0.99),
            max_ms=got["max_ms"],
            lost=expected - unique,
            cpu=cpu,
            notes=" ".join(notes),
        )

    def ladder(self, server: Server) -> list[Step]:
        """Rising rates until a step does not hold; returns the steps run."""
        print(f"\n{server.name}: uvicorn {server.app}, path {server.path}", flush=True)
        process, address = self.serve(server)
        clients = None
        steps: list[Step] = []
        try:
            clients = self.connect(server, address)
            watched = {"server": [process.proc.pid], "clients": clients.pids, "redis": [self.redis.proc.pid]}
            print(header(list(watched)), flush=True)
            for rate in self.opts.rates:
                nodes = [FakeNode(f"fanout-{i:02d}", i + 1, DEVICES_PER_NODE) for i in range(rate)]
                step = self.measure(
                    f"{rate} msg/s",
                    [n.name for n in nodes],
                    lambda seconds, nodes=nodes: publish_for(self.client, nodes, seconds),
                    clients,
                    watched,
                    self.opts.seconds,
                    rate,
                )
                steps.append(step)
                print(row(step), flush=True)
                if not step.holds:
                    break
        finally:
            if clients is not None:
                clients.stop()
            process.stop()
        return steps

    def scenario(self) -> None:
        """MOC with 1,000 clients and a real device worker publishing 8 simulated GPUs at 1 Hz."""
        seconds = self.opts.scenario_seconds
        print(
            f"\nMOC, {self.opts.clients} logged-in clients, node {SCENARIO_NODE!r} with {SCENARIO_DEVICES} "
            f"sampled by a Celery device worker, {seconds:.0f} s",
            flush=True,
        )
        server = SERVERS["moc"]
        process, address = self.serve(server)
        worker = Process(
            [
                python(),
                "-m",
                "celery",
                "-A",
                "moc_site",
                "worker",
                "-Q",
                SCENARIO_QUEUE,
                "-n",
                f"{SCENARIO_QUEUE}@%h",
                "-P",
                "threads",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            {
                **self.env,
                "MOC_DEVICES": SCENARIO_DEVICES,
                "MOC_NODE_NAME": SCENARIO_NODE,
                "MOC_DEVICE_QUEUES": SCENARIO_QUEUE,
            },
            self.scratch / "worker.log",
        )
        clients = None
        try:
            clients = self.connect(server, address)
            worker.start()

            def publishing() -> bool:
                if not worker.alive():
                    raise RuntimeError(f"the worker exited:\n{worker.output()[-3000:]}")
                return seqs(self.client, [SCENARIO_NODE])[SCENARIO_NODE] > 0

            wait_until(publishing, 90, "the device worker's first telemetry message")
            watched = {
                "server": [process.proc.pid],
                "clients": clients.pids,
                "redis": [self.redis.proc.pid],
                "worker": [worker.proc.pid],
            }
            step = self.measure(
                f"{seconds:.0f} s", [SCENARIO_NODE], time.sleep, clients, watched, seconds, 1.0
            )
            print(header(list(watched)))
            print(row(step))
            print(
                f"  lag p50 {step.p50_ms:.1f} ms, p99 {step.p99_ms:.1f} ms, max {step.max_ms:.1f} ms; "
                f"messages lost: {step.lost}",
                flush=True,
            )
        finally:
            if clients is not None:
                clients.stop()
            worker.stop()
            process.stop()

    def stop(self) -> None:
        self.redis.stop()


def best(steps: list[Step]) -> float:
    return max((s.achieved for s in steps if s.holds), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=lambda v: [int(r) for r in v.split(",")],
        default=[2, 5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 70, 80],
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window of each step")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up before each window")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--servers", default="bare,moc", help="comma list of: bare, moc")
    parser.add_argument("--scenario-seconds", type=float, default=30.0, help="0 skips the 8-GPU scenario")
    parser.add_argument("--ws", default="auto", help="uvicorn's --ws implementation for both servers")
    parser.add_argument(
        "--deflate", action="store_true", help="clients offer permessage-deflate, as browsers do"
    )
    opts = parser.parse_args()
    results: dict[str, list[Step]] = {}
    with tempfile.TemporaryDirectory(prefix="moc-bench-") as scratch:
        bench = Bench(Path(scratch), opts)
        try:
            for key in opts.servers.split(","):
                results[key] = bench.ladder(SERVERS[key])
            if opts.scenario_seconds > 0:
                bench.scenario()
        finally:
            bench.stop()
    print()
    for key, steps in results.items():
        ceiling = "" if steps and not steps[-1].holds else " (held at every rate tried: a lower bound)"
        print(f"{SERVERS[key].name:>10}: {best(steps):7.0f} deliveries/s sustained{ceiling}")
    if {"bare", "moc"} <= results.keys() and best(results["bare"]):
        print(f"{'MOC / bare':>10}: {best(results['moc']) / best(results['bare']):7.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
