"""Worker heartbeats against the real session Redis: what is remembered per queue, when a queue
counts as silent (and when that is not known), and how a restart after a crash is recorded.

A worker is alive while its TTL key lives, whatever its clock says: a test that wants a worker
silent deletes the key (`expire`), as Redis would once its TTL ran out."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import time_machine

from apps.core import workers
from apps.core.workers import Heard, Restart
from tests.procs import RedisServer, free_port, wait_until

QUEUE = "gpu.node1.0"
HOST = "gpu.node1.0@box"


def heard(*, stopped: bool = False, restart: Restart | None = None, alive: bool = False) -> Heard:
    return Heard(
        hostname=HOST, pid=41, started=50.0, seen=100.0, stopped=stopped, restart=restart, alive=alive
    )


def expire(client: redis.Redis, hostname: str = HOST) -> None:
    """`hostname`'s TTL key runs out, as it does MOC_WORKER_SILENT_AFTER_S after its last beat."""
    assert client.delete(f"{workers.KEY_PREFIX}{hostname}") == 1


def test_a_beat_is_remembered_per_queue_it_consumes(redis_server: RedisServer) -> None:
    workers.beat(redis_server.client(), HOST, ["default", QUEUE], started=123.0)

    [last] = workers.queue_heard(QUEUE)

    assert (last.hostname, last.started, last.stopped, last.restart, last.alive) == (
        HOST,
        123.0,
        False,
        None,
        True,
    )
    assert last.pid > 0
    assert workers.queue_heard("default") == [last]


def test_queue_heard_lists_the_latest_beat_first(redis_server: RedisServer) -> None:
    workers.beat(redis_server.client(), "old@box", [QUEUE], started=1.0)
    workers.beat(redis_server.client(), "new@box", [QUEUE], started=2.0)

    assert [h.hostname for h in workers.queue_heard(QUEUE)] == ["new@box", "old@box"]


def test_queues_heard_reads_every_queue_asked_for_and_nothing_for_none(redis_server: RedisServer) -> None:
    workers.beat(redis_server.client(), HOST, [QUEUE], started=1.0)

    assert {q: [h.hostname for h in hs] for q, hs in workers.queues_heard([QUEUE, "cpu.x.0"]).items()} == {
        QUEUE: [HOST],
        "cpu.x.0": [],
    }
    assert workers.queues_heard([]) == {}


def test_a_queue_is_not_silent_while_its_worker_beats(settled: RedisServer) -> None:
    workers.beat(settled.client(), HOST, [QUEUE], started=time.time())

    assert workers.queue_silence(QUEUE) is None


def test_a_queue_whose_worker_went_quiet_is_silent_since_its_last_beat(settled: RedisServer) -> None:
    workers.beat(settled.client(), HOST, [QUEUE], started=time.time())
    [last] = workers.queue_heard(QUEUE)
    expire(settled.client())

    silence = workers.queue_silence(QUEUE)

    assert silence is not None
    assert (silence.queue, silence.last.hostname, silence.since, silence.last.stopped) == (
        QUEUE,
        HOST,
        last.seen,
        False,
    )


def test_a_queue_whose_worker_stopped_cleanly_is_silent_at_once_and_says_so(settled: RedisServer) -> None:
    workers.beat(settled.client(), HOST, [QUEUE], started=time.time(), stopped=True)

    silence = workers.queue_silence(QUEUE)

    assert silence is not None
    assert silence.last.stopped is True
    assert not settled.client().exists(f"{workers.KEY_PREFIX}{HOST}")  # and it is not live


def test_one_live_worker_keeps_a_queue_from_being_silent(settled: RedisServer) -> None:
    workers.beat(settled.client(), "gone@box", [QUEUE], started=1.0, stopped=True)
    workers.beat(settled.client(), HOST, [QUEUE], started=time.time())

    assert workers.queue_silence(QUEUE) is None


def test_a_queue_never_heard_of_is_not_known_to_be_silent(settled: RedisServer) -> None:
    assert workers.queue_silence(QUEUE) is None


def test_nothing_is_silent_while_redis_has_just_restarted(tmp_path: Path, settings: Any) -> None:
    settings.MOC_WORKER_SILENT_AFTER_S = 2
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        workers.beat(server.client(), HOST, [QUEUE], started=1.0)
        server.stop()
        server.start()  # its append-only file brings the beat back, old
        [last] = workers.queue_heard(QUEUE, server.client())
        expire(server.client())  # its TTL ran out while Redis was down

        unknown = workers.queue_silence(QUEUE, client=server.client())
        wait_until(lambda: workers.heartbeats_settled(server.client()), 10, "Redis to be up for 2 s")
        known = workers.queue_silence(QUEUE, client=server.client())
    finally:
        server.stop()

    assert unknown is None
    assert known is not None
    assert known.since == last.seen


def test_a_worker_whose_clock_runs_behind_and_beats_less_often_is_alive_while_its_key_lives(
    settled: RedisServer, settings: Any
) -> None:
    settings.MOC_WORKER_SILENT_AFTER_S = 30  # the worker's own limit, 15 times the web's (2 s)
    with time_machine.travel(time.time() - 20, tick=False):  # its clock: 20 s behind the web's
        workers.beat(settled.client(), HOST, [QUEUE], started=time.time())
    settings.MOC_WORKER_SILENT_AFTER_S = 2

    [last] = workers.queue_heard(QUEUE)

    assert time.time() - last.seen > 19  # by the web's clock its beat is long past 2 s old
    assert (last.alive, last.status()) == (True, workers.WorkerStatus.ALIVE)
    assert workers.queue_silence(QUEUE) is None
    assert 20 < settled.client().ttl(f"{workers.KEY_PREFIX}{HOST}") <= 30  # the TTL it chose


def test_a_worker_whose_key_expired_is_silent_however_recent_its_last_beat_looks(
    settled: RedisServer,
) -> None:
    with time_machine.travel(time.time() + 60, tick=False):  # a clock running ahead
        workers.beat(settled.client(), HOST, [QUEUE], started=time.time())
    expire(settled.client())

    silence = workers.queue_silence(QUEUE)

    assert silence is not None
    assert silence.since > time.time()  # as the worker told it
    assert workers.queue_heard(QUEUE)[0].status() == workers.WorkerStatus.SILENT


def test_a_live_run_that_consumes_other_queues_leaves_its_old_queue_silent(settled: RedisServer) -> None:
    workers.beat(settled.client(), HOST, [QUEUE], started=1.0)  # the run that died
    expire(settled.client())
    workers.beat(settled.client(), HOST, ["cpu.x.0"], started=time.time())  # alive, elsewhere

    silence = workers.queue_silence(QUEUE)

    assert silence is not None
    assert silence.last.started == 1.0
    assert [h.alive for h in workers.queue_heard("cpu.x.0")] == [True]


def test_a_worker_status_is_alive_silent_or_stopped() -> None:
    assert heard(alive=True).status() == workers.WorkerStatus.ALIVE
    assert heard().status() == workers.WorkerStatus.SILENT
    assert heard(stopped=True).status() == workers.WorkerStatus.STOPPED


def test_the_heartbeat_outlives_an_error_that_is_not_redis_s(
    redis_server: RedisServer, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.MOC_WORKER_HEARTBEAT_S = 0.05
    queues: list[Any] = [object()]  # a queue no beat can encode: TypeError, on every beat
    workers._stop.clear()
    thread = threading.Thread(target=workers._loop, args=(HOST, queues, 1.0, None), daemon=True)
    try:
        with caplog.at_level(logging.ERROR, logger="apps.core.workers"):
            thread.start()
            wait_until(lambda: "worker heartbeat failed" in caplog.text, 5, "a beat to fail")
        queues[0] = QUEUE  # the cause goes: the next beat lands

        wait_until(lambda: workers.queue_heard(QUEUE), 5, "a beat after the error")
    finally:
        workers._stop.set()
        thread.join(5)
    assert "TypeError" in caplog.text


def test_a_first_start_records_no_restart() -> None:
    assert workers.restart_after(None, started=200.0) is None


def test_a_start_after_a_clean_stop_records_no_new_restart() -> None:
    assert workers.restart_after(heard(stopped=True), started=200.0) is None


def test_a_start_after_a_run_that_died_records_a_restart_and_the_dead_run() -> None:
    restart = workers.restart_after(heard(), started=200.0)

    assert restart == Restart(count=1, at=200.0, dead_pid=41, dead_started=50.0, dead_seen=100.0)


def test_restarts_after_crashes_are_counted_across_runs_and_clean_stops_carry_them() -> None:
    first = Restart(count=2, at=40.0, dead_pid=7, dead_started=1.0, dead_seen=30.0)

    assert workers.restart_after(heard(stopped=True, restart=first), started=200.0) == first
    again = workers.restart_after(heard(restart=first), started=200.0)
    assert again is not None
    assert (again.count, again.at, again.dead_pid) == (3, 200.0, 41)


def test_a_worker_started_after_a_crash_logs_it_and_its_beats_carry_it(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    workers.beat(client, HOST, [QUEUE], started=10.0)  # the run that dies: no goodbye
    [dead] = workers.queue_heard(QUEUE)

    with caplog.at_level(logging.WARNING, logger="apps.core.workers"):
        restart = workers.note_restart(HOST, [QUEUE], started=dead.seen + 5)
    workers.beat(client, HOST, [QUEUE], started=dead.seen + 5, restart=restart)

    [now] = workers.queue_heard(QUEUE)
    assert now.restart == Restart(
        count=1, at=dead.seen + 5, dead_pid=dead.pid, dead_started=10.0, dead_seen=dead.seen
    )
    [record] = [r for r in caplog.records if "restarted after a crash" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert HOST in record.getMessage()
    assert f"pid {dead.pid}" in record.getMessage()


def test_a_worker_started_after_a_clean_stop_logs_nothing(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    workers.beat(redis_server.client(), HOST, [QUEUE], started=10.0, stopped=True)

    with caplog.at_level(logging.WARNING, logger="apps.core.workers"):
        assert workers.note_restart(HOST, [QUEUE], started=time.time()) is None

    assert not caplog.records


def test_a_worker_that_cannot_read_redis_at_start_counts_no_restart(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    with caplog.at_level(logging.WARNING, logger="apps.core.workers"):
        assert workers.note_restart(HOST, [QUEUE], started=time.time()) is None

    assert "crash before it is not counted" in caplog.text
