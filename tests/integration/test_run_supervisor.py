"""The run command, scripts/run.sh, as a person starts it: it supervises what it starts.

One real run (a fresh var folder, free ports, its own Redis, a simulated GPU) serves the
module: a device worker SIGKILLed is started again while web keeps answering; a process that
dies each time it starts is given up on, loudly, while the rest keeps running; and SIGINT, as
Ctrl-C sends it, stops every process it started, Redis after the workers.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from apps.core.workers import queue_heard
from tests.procs import ROOT, free_port, project_env, wait_until

pytestmark = pytest.mark.integration

QUEUE = "gpu.itest.0"
WORKER = "worker_gpu_itest_0"
START_RETRIES = 2


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    log: Path
    var: Path
    port: int
    ws_port: int
    redis: redis.Redis
    others: list[psutil.Process] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ctl(self, *args: str) -> str:
        """supervisorctl with the configuration the run command wrote, as the docs say to use it."""
        supervisorctl = Path(sys.executable).parent / "supervisorctl"
        conf = self.var / "supervisord.conf"
        done = subprocess.run(
            [str(supervisorctl), "-c", str(conf), *args], capture_output=True, text=True, timeout=20
        )
        return done.stdout.strip()

    def pid(self, program: str) -> int:
        return int(self.ctl("pid", program))

    def healthz(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("run")
    var, log = tmp / "var", tmp / "run.log"
    port, ws_port, redis_port = free_port(), free_port(), free_port()
    env = project_env(
        MOC_VAR_DIR=str(var),
        MOC_PORT=str(port),
        MOC_WEB_PORT=str(free_port()),
        MOC_WS_PORT=str(ws_port),
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        MOC_DEVICES="sim:1x8GiB",
        MOC_NODE_NAME="itest",
        MOC_DEMO_MODELS="no",
        MOC_REGISTRY_SCAN_ON_START="false",
        MOC_ADMIN_PASSWORD="pw-for-tests-only",
        MOC_WORKER_HEARTBEAT_S="1",
        MOC_START_RETRIES=str(START_RETRIES),
    )
    for name in ("DATABASE_URL", "MOC_SQLITE_PATH", "MOC_DEVICE_QUEUES", "MOC_START_REDIS", "MOC_LISTEN"):
        env.pop(name, None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # Written to as `scripts/run.sh >run.log` would: opened for writing, not appending.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "run.sh")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started = Run(proc, log, var, port, ws_port, redis.Redis(port=redis_port, socket_timeout=2))
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the run command exited ({proc.returncode}):\n{started.output()[-4000:]}")
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200

        wait_until(ready, 120, "the run command's /readyz to answer 200", interval=0.5)
        yield started
    finally:
        if proc.poll() is None:  # a test failed before it stopped the run: leave nothing behind
            leftovers = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            proc.wait(10)
            for child in leftovers + started.others:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()


def _supervisor_log(run: Run) -> str:
    return (run.var / "log" / "supervisord.log").read_text()


def test_a_killed_device_worker_is_started_again_while_web_answers(run: Run) -> None:
    # given: the worker of the device queue, heard of in Redis under its own pid
    wait_until(lambda: "RUNNING" in run.ctl("status", f"workers:{WORKER}"), 30, "the worker to be RUNNING")
    old = run.pid(f"workers:{WORKER}")
    wait_until(lambda: any(h.pid == old for h in queue_heard(QUEUE, run.redis)), 30, "its heartbeat")
    answers: list[int | str] = []
    stop = threading.Event()

    def poll_healthz() -> None:
        while not stop.is_set():
            try:
                answers.append(run.healthz())
            except httpx.HTTPError as exc:
                answers.append(repr(exc))
            time.sleep(0.1)

    poller = threading.Thread(target=poll_healthz)
    poller.start()

    # when: it dies as the OOM killer would kill it
    try:
        psutil.Process(old).send_signal(signal.SIGKILL)

        # then: another process serves its queue and beats for it
        def beats_anew() -> bool:
            heard = [h for h in queue_heard(QUEUE, run.redis) if h.hostname.startswith(f"{QUEUE}@")]
            return bool(heard) and heard[0].pid not in (0, old) and not heard[0].stopped

        wait_until(beats_anew, 45, "a new worker process to beat for the queue", interval=0.5)
    finally:
        stop.set()
        poller.join()
    new = run.pid(f"workers:{WORKER}")
    assert new != old
    assert queue_heard(QUEUE, run.redis)[0].pid == new
    assert answers, "web was never asked"
    assert set(answers) == {200}, f"web did not answer throughout: {[a for a in answers if a != 200][:5]}"
    output = run.output()
    assert f"exited: {WORKER} (terminated by SIGKILL; not expected)" in output
    assert re.search(
        rf"supervisor +\| !! {WORKER} stopped without being asked \(terminated by SIGKILL\) at "
        rf"\d\d:\d\d:\d\d after [0-9:]+ up; restarting it now \(restart 1 ",
        output,
    ), output[-3000:]


def test_a_process_that_dies_as_it_starts_is_given_up_on_loudly_and_the_rest_runs(run: Run) -> None:
    # given: the websocket server's port taken by someone else as soon as it is killed
    wait_until(lambda: "RUNNING" in run.ctl("status", "servers:ws"), 30, "ws to be RUNNING")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        psutil.Process(run.pid("servers:ws")).send_signal(signal.SIGKILL)
        wait_until(lambda: squatter.bind(("127.0.0.1", run.ws_port)) is None, 5, "ws's port to be free")
        squatter.listen()

        # when: every start of ws fails within seconds
        wait_until(
            lambda: "FATAL" in run.ctl("status", "servers:ws"), 60, "supervisord to give up on ws", 0.5
        )
    finally:
        squatter.close()

    # then: it stays down, the console says so loudly, and web still answers
    tries = re.findall(r"exited: ws \((exit status \d+); not expected\)", _supervisor_log(run))
    assert len(tries) == START_RETRIES + 1
    output = run.output()
    assert f"retry {START_RETRIES} of {START_RETRIES}" in output
    assert "!! ws IS DOWN and stays down" in output
    assert "start servers:ws" in output
    assert run.healthz() == 200
    # The worker runs on (the test before may have restarted it: STARTING for its first 10 s).
    wait_until(lambda: "RUNNING" in run.ctl("status", f"workers:{WORKER}"), 15, "the worker to run on", 0.5)


def test_sigint_stops_every_process_redis_last(run: Run) -> None:
    # given
    children = psutil.Process(run.proc.pid).children(recursive=True)
    assert len(children) > 8  # supervisord's programs and their own workers
    run.others = children

    # when: Ctrl-C
    run.proc.send_signal(signal.SIGINT)

    # then
    assert run.proc.wait(90) == 0
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left running: {[(p.pid, p.name()) for p in alive]}"
    stopped = re.findall(r"stopped: (\w+) \(", _supervisor_log(run))
    assert stopped.index("web") < stopped.index(WORKER) < stopped.index("redis")
    assert stopped.index("worker_default") < stopped.index("redis")
