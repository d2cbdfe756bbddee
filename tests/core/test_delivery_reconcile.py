"""Deliveries of dead workers: a row left running by a worker whose heartbeat is gone is marked
lost (or interrupted, after a clean stop) within seconds, not left running until the broker's
visibility timeout; its redelivery is then counted once, and poisoned past the limit."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.test.utils import override_settings

from apps.core import tasks, workers
from apps.core.delivery import deliveries_reconcile, delivery_begin, delivery_finish
from apps.core.domain.states import DeliveryState
from apps.core.models import TaskDelivery
from apps.core.workers import Restart
from moc_site.celery import app
from tests.core.factories import TaskDeliveryFactory
from tests.procs import RedisServer, free_port

pytestmark = pytest.mark.django_db

HOST = "gpu.node1.0@box"
QUEUE = "gpu.node1.0"


def at(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def iso(epoch: float) -> str:
    return at(epoch).isoformat(timespec="seconds")


def held(state: DeliveryState = DeliveryState.RUNNING, *, delivered: float, **fields: Any) -> TaskDelivery:
    return TaskDeliveryFactory(
        task_id="t-1", worker=HOST, queue=QUEUE, state=state, last_delivered_at=at(delivered), **fields
    )


def beat(server: RedisServer, started: float, *, silent: bool = False, **kwargs: Any) -> workers.Heard:
    """A beat of HOST, as heard; `silent`: its TTL key then runs out (the worker went quiet)."""
    workers.beat(server.client(), HOST, [QUEUE], started, **kwargs)
    if silent:
        server.client().delete(f"{workers.KEY_PREFIX}{HOST}")
    return workers.queue_heard(QUEUE)[0]


def test_a_running_delivery_of_a_worker_gone_silent_is_lost_naming_it_and_since_when(
    settled: RedisServer,
) -> None:
    started = time.time() - 10
    held(delivered=started + 1)
    last = beat(settled, started, silent=True)

    counts = deliveries_reconcile()

    row = TaskDelivery.objects.get()
    assert counts == {"lost": 1, "interrupted": 0}
    assert (row.state, row.lost_deliveries, row.finished_at) == (DeliveryState.LOST, 1, None)
    assert f"worker {HOST} (pid {last.pid}) silent since {iso(last.seen)}" in row.error
    assert "visibility timeout" in row.error


def test_a_running_delivery_of_a_live_worker_is_left_alone(settled: RedisServer) -> None:
    started = time.time() - 10
    held(delivered=started + 1)
    beat(settled, started)

    assert deliveries_reconcile() == {"lost": 0, "interrupted": 0}
    assert TaskDelivery.objects.get().state == DeliveryState.RUNNING


def test_a_running_delivery_of_a_live_worker_whose_clock_runs_behind_is_left_alone(
    settled: RedisServer,
) -> None:
    started = time.time() - 60
    held(delivered=started + 1)
    with time_machine.travel(time.time() - 30, tick=False):  # its clock: 30 s behind, past 2 s
        beat(settled, started)

    assert deliveries_reconcile() == {"lost": 0, "interrupted": 0}
    assert TaskDelivery.objects.get().state == DeliveryState.RUNNING


def test_a_running_delivery_of_a_worker_that_restarted_after_a_crash_is_lost(settled: RedisServer) -> None:
    dead_started = time.time() - 60
    held(delivered=dead_started + 5)
    restart = Restart(
        count=1, at=dead_started + 30, dead_pid=4242, dead_started=dead_started, dead_seen=dead_started + 20
    )
    beat(settled, restart.at, restart=restart)

    deliveries_reconcile()  # the new run is alive: the old one is still dead

    row = TaskDelivery.objects.get()
    assert (row.state, row.lost_deliveries) == (DeliveryState.LOST, 1)
    assert f"(pid 4242) died while running it: silent since {iso(dead_started + 20)}" in row.error
    assert f"restarted at {iso(restart.at)}" in row.error


def test_a_running_delivery_of_an_earlier_run_than_the_live_one_is_lost(settled: RedisServer) -> None:
    started = time.time() - 10
    held(delivered=started - 100)
    beat(settled, started)

    deliveries_reconcile()

    row = TaskDelivery.objects.get()
    assert row.state == DeliveryState.LOST
    assert f"restarted at {iso(started)}, after the run that was running it" in row.error


def test_a_running_delivery_of_a_worker_that_stopped_cleanly_is_interrupted_not_lost(
    settled: RedisServer,
) -> None:
    started = time.time() - 10
    held(delivered=started + 1)
    last = beat(settled, started, stopped=True)

    counts = deliveries_reconcile()

    row = TaskDelivery.objects.get()
    assert counts == {"lost": 0, "interrupted": 1}
    assert (row.state, row.lost_deliveries) == (DeliveryState.INTERRUPTED, 0)
    assert f"stopped at {iso(last.seen)}" in row.error


def test_an_interrupted_delivery_of_a_worker_that_died_in_its_shutdown_is_lost_but_not_counted(
    settled: RedisServer,
) -> None:
    started = time.time() - 10
    held(DeliveryState.INTERRUPTED, delivered=started + 1)
    beat(settled, started, silent=True)

    deliveries_reconcile()

    row = TaskDelivery.objects.get()
    assert (row.state, row.lost_deliveries) == (DeliveryState.LOST, 0)


def test_an_interrupted_delivery_of_a_worker_that_stopped_cleanly_stays_interrupted(
    settled: RedisServer,
) -> None:
    started = time.time() - 10
    held(DeliveryState.INTERRUPTED, delivered=started + 1)
    beat(settled, started, stopped=True)

    assert deliveries_reconcile() == {"lost": 0, "interrupted": 0}
    assert TaskDelivery.objects.get().state == DeliveryState.INTERRUPTED


def test_a_delivery_of_a_worker_never_heard_of_is_left_alone(settled: RedisServer) -> None:
    held(delivered=time.time() - 100)

    deliveries_reconcile()

    assert TaskDelivery.objects.get().state == DeliveryState.RUNNING


def test_nothing_is_judged_while_redis_has_just_restarted(tmp_path: Path, settings: Any) -> None:
    settings.MOC_WORKER_SILENT_AFTER_S = 2
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with override_settings(REDIS_URL=server.url):
            started = time.time() - 10
            held(delivered=started + 1)
            beat(server, started, silent=True)  # its TTL runs out while Redis is down
            server.stop()
            server.start()  # the old beat comes back from the append-only file

            counts = deliveries_reconcile()
    finally:
        server.stop()

    assert counts == {"lost": 0, "interrupted": 0}
    assert TaskDelivery.objects.get().state == DeliveryState.RUNNING


def test_nothing_is_judged_while_redis_cannot_be_read(settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    held(delivered=time.time() - 100)

    assert deliveries_reconcile() == {"lost": 0, "interrupted": 0}
    assert TaskDelivery.objects.get().state == DeliveryState.RUNNING


def test_the_redelivery_of_a_lost_delivery_runs_and_is_not_counted_twice(settled: RedisServer) -> None:
    started = time.time() - 10
    held(delivered=started + 1)
    beat(settled, started, silent=True)
    deliveries_reconcile()

    runnable = delivery_begin(
        task_id="t-1", task_name="x", queue=QUEUE, worker="other@box", args=[], kwargs={}
    )

    row = TaskDelivery.objects.get()
    assert runnable is True
    assert (row.state, row.deliveries, row.lost_deliveries, row.worker) == (
        DeliveryState.RUNNING,
        2,
        1,
        "other@box",
    )


def test_the_redelivery_of_a_lost_delivery_at_the_limit_is_poisoned(
    settled: RedisServer, settings: Any
) -> None:
    settings.MOC_TASK_MAX_DELIVERIES = 2
    started = time.time() - 10
    held(delivered=started + 1, deliveries=2, lost_deliveries=1)
    beat(settled, started, silent=True)
    deliveries_reconcile()

    runnable = delivery_begin(
        task_id="t-1", task_name="x", queue=QUEUE, worker="other@box", args=[], kwargs={}
    )

    row = TaskDelivery.objects.get()
    assert runnable is False
    assert (row.state, row.lost_deliveries) == (DeliveryState.POISONED, 2)
    assert "died 2 times" in row.error


def test_a_worker_taken_for_dead_that_was_only_silent_may_still_finish(settled: RedisServer) -> None:
    started = time.time() - 10
    held(delivered=started + 1)
    beat(settled, started, silent=True)
    deliveries_reconcile()

    delivery_finish(task_id="t-1", state=DeliveryState.SUCCEEDED)

    assert TaskDelivery.objects.get().state == DeliveryState.SUCCEEDED


def test_beat_reconciles_deliveries_every_few_seconds_with_an_expiry() -> None:
    entry = app.conf.beat_schedule["core-reconcile-task-deliveries"]

    assert entry["task"] == tasks.task_deliveries_reconcile.name
    assert entry["schedule"] <= 30
    assert 0 < entry["options"]["expires"] <= entry["schedule"]
    assert tasks.task_deliveries_reconcile.ignore_result is True
