"""SIGTERM stops a worker within MOC_WORKER_SOFT_SHUTDOWN_S and hands its unfinished task back.

SIGTERM is Celery's warm shutdown, which would wait for a running task however long it takes;
apps/core/shutdown.py bounds it: the worker says goodbye as the window starts, and past it marks
the task interrupted, puts every message it holds back on its queue, runs its shutdown hooks and
exits. Real workers of both pools, SIGTERMed mid-task.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from apps.core import workers
from apps.core.domain.states import DeliveryState
from apps.core.models import TaskDelivery
from apps.fleet.agent import LOCK_PREFIX
from tests.integration.crashing_tasks import sleep
from tests.procs import Process, RedisServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WINDOW_S = 3
SLACK_S = 6  # the worker's own teardown: stopping the pool, closing the broker connection


def _state(task_id: str) -> DeliveryState | None:
    row = TaskDelivery.objects.filter(task_id=task_id).first()
    return None if row is None else DeliveryState(row.state)


def _sigterm_and_time(worker: Process, within: float) -> float:
    """SIGTERM to the main process only, as docker stop and a supervisor send it; seconds to exit."""
    assert worker.proc is not None
    began = time.monotonic()
    worker.proc.terminate()
    try:
        worker.proc.wait(within)
    except subprocess.TimeoutExpired as exc:
        worker.kill()
        raise AssertionError(f"still running {within}s after SIGTERM:\n{worker.output()[-3000:]}") from exc
    return time.monotonic() - began


def _worker(start_worker, pool: str, queue: str, name: str) -> Process:
    return start_worker(queues=queue, pool=pool, name=name, MOC_WORKER_SOFT_SHUTDOWN_S=str(WINDOW_S))


def _hand_back(start_worker, pool: str, queue: str) -> TaskDelivery:
    leaving = _worker(start_worker, pool, queue, "leaving")
    task = sleep.apply_async(args=[60], queue=queue)
    wait_until(lambda: _state(task.id) == DeliveryState.RUNNING, 30, "the long task to start")

    took = _sigterm_and_time(leaving, WINDOW_S + SLACK_S)

    assert took >= WINDOW_S - 0.5  # the task was given its window
    assert "handed back to the broker" in leaving.output()
    assert _state(task.id) == DeliveryState.INTERRUPTED
    _worker(start_worker, pool, queue, "arriving")
    wait_until(
        lambda: TaskDelivery.objects.get(task_id=task.id).deliveries == 2,
        30,
        "a second worker to take the handed-back task",
    )
    return TaskDelivery.objects.get(task_id=task.id)


def test_sigterm_stops_a_busy_prefork_worker_within_the_window_and_hands_its_task_back(start_worker):
    row = _hand_back(start_worker, "prefork", "default")

    assert row.lost_deliveries == 0  # handed back, not taken for a crash
    assert row.state == DeliveryState.RUNNING


def test_sigterm_stops_a_busy_thread_pool_worker_within_the_window_and_hands_its_task_back(start_worker):
    row = _hand_back(start_worker, "threads", "gpu.stop.0")

    assert row.lost_deliveries == 0
    assert row.state == DeliveryState.RUNNING


def test_a_task_that_ends_inside_the_window_finishes_and_the_worker_stops_with_it(start_worker):
    worker = _worker(start_worker, "threads", "gpu.stop.0", "finishing")
    task = sleep.apply_async(args=[1.5], queue="gpu.stop.0")
    wait_until(lambda: _state(task.id) == DeliveryState.RUNNING, 30, "the task to start")

    _sigterm_and_time(worker, WINDOW_S + SLACK_S)

    assert _state(task.id) == DeliveryState.SUCCEEDED
    assert "handed back" not in worker.output()


def _own_beat(redis_server: RedisServer, queue: str, worker: Process) -> workers.Heard:
    assert worker.proc is not None
    [heard] = [h for h in workers.queue_heard(queue, redis_server.client()) if h.pid == worker.proc.pid]
    return heard


def test_a_sigtermed_worker_says_goodbye_as_its_window_starts_and_beats_no_more(
    start_worker, redis_server: RedisServer
):
    worker = _worker(start_worker, "threads", "gpu.stop.0", "goodbye")
    task = sleep.apply_async(args=[60], queue="gpu.stop.0")
    wait_until(lambda: _state(task.id) == DeliveryState.RUNNING, 30, "the long task to start")
    assert worker.proc is not None

    worker.proc.terminate()
    wait_until(lambda: _own_beat(redis_server, "gpu.stop.0", worker).stopped, 2, "its goodbye", interval=0.1)
    goodbye = _own_beat(redis_server, "gpu.stop.0", worker)
    while worker.proc.poll() is None:  # the rest of its window: it finishes, but beats no more
        assert _own_beat(redis_server, "gpu.stop.0", worker) == goodbye
        time.sleep(0.2)

    assert not goodbye.alive
    assert _own_beat(redis_server, "gpu.stop.0", worker) == goodbye  # no second goodbye either


def _held(redis_server: RedisServer, queue: str) -> set[str]:
    """The ids of the task messages waiting on `queue`, in any of its priority lists."""
    client = redis_server.client()
    return {
        json.loads(raw)["headers"]["id"]
        for key in client.scan_iter(match=f"{queue}*")
        if client.type(key) == b"list"
        for raw in client.lrange(key, 0, -1)
    }


def test_past_the_window_every_message_held_goes_back_and_the_shutdown_hooks_run(
    start_worker, redis_server: RedisServer
):
    node = "itest-stop"
    queue = f"gpu.{node}.0"
    client = redis_server.client()
    worker = start_worker(
        queues=queue,
        pool="threads",
        name="holding",
        MOC_WORKER_SOFT_SHUTDOWN_S=str(WINDOW_S),
        MOC_DEVICES="sim:1x24GiB",
        MOC_NODE_NAME=node,
    )
    wait_until(lambda: client.exists(LOCK_PREFIX + node), 30, "its fleet agent to take the node's lock")
    later = sleep.apply_async(args=[1], queue=queue, countdown=3600)  # held unacked until its ETA
    wait_until(lambda: client.hlen("unacked") == 1, 30, "the worker to take the later one")
    running = sleep.apply_async(args=[60], queue=queue)
    wait_until(lambda: _state(running.id) == DeliveryState.RUNNING, 30, "the long task to start")
    assert client.hlen("unacked") == 2

    _sigterm_and_time(worker, WINDOW_S + SLACK_S)

    assert client.hlen("unacked") == 0
    assert _held(redis_server, queue) == {running.id, later.id}
    assert not client.exists(LOCK_PREFIX + node)  # the fleet agent's hook released it
