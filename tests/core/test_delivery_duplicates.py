"""A message sent twice under one task id (its outbox row outlived the first send, apps/core/
dispatch.py) is not a crash: while the worker run that took the first copy lives, the second copy
is skipped without counting a lost delivery. A broker redelivery still counts, as a prefork
child that died puts its message back while its worker beats on. Heartbeats in the session's
real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from apps.core import workers
from apps.core.delivery import DurableTask, delivery_begin
from apps.core.domain.states import DeliveryState
from apps.core.models import TaskDelivery
from apps.core.redis_clients import redis_client
from moc_site.celery import app

pytestmark = pytest.mark.django_db

FIRST = "default@first"
RAN: list[int] = []


@app.task(base=DurableTask, name="tests.core.test_delivery_duplicates.work")
def work(value: int) -> int:
    RAN.append(value)
    return value


@pytest.fixture(autouse=True)
def _ran() -> Iterator[None]:
    RAN.clear()
    yield
    RAN.clear()


@pytest.fixture
def first_copy_running() -> TaskDelivery:
    """The first copy of t-1 taken by FIRST's current run, which is still running it."""
    workers.beat(redis_client(), FIRST, ["default"], time.time() - 60)
    assert delivery_begin(
        task_id="t-1", task_name=work.name, queue="default", worker=FIRST, args=[1], kwargs={}
    )
    return TaskDelivery.objects.get(task_id="t-1")


def deliver_copy(*, redelivered: bool, worker: str = "default@second") -> Any:
    """Hands t-1 to the task the way a worker does, with the broker's redelivered flag."""
    work.push_request(
        id="t-1",
        called_directly=False,
        is_eager=False,
        hostname=worker,
        delivery_info={"routing_key": "default", "redelivered": redelivered},
    )
    try:
        return work(1)
    finally:
        work.pop_request()


def test_a_second_send_while_the_first_copy_runs_is_skipped_without_counting_a_loss(
    first_copy_running: TaskDelivery,
) -> None:
    assert deliver_copy(redelivered=False) is None

    row = TaskDelivery.objects.get(task_id="t-1")
    assert RAN == []
    assert (row.state, row.deliveries, row.lost_deliveries, row.worker) == (
        DeliveryState.RUNNING,
        1,
        0,
        FIRST,
    )


def test_a_broker_redelivery_while_the_worker_beats_still_counts_as_lost(
    first_copy_running: TaskDelivery,
) -> None:
    assert deliver_copy(redelivered=True) == 1

    row = TaskDelivery.objects.get(task_id="t-1")
    assert RAN == [1]
    assert (row.deliveries, row.lost_deliveries, row.state) == (2, 1, DeliveryState.SUCCEEDED)


def test_a_second_send_after_the_first_copys_worker_died_runs_it(first_copy_running: TaskDelivery) -> None:
    redis_client().delete(f"{workers.KEY_PREFIX}{FIRST}")  # its TTL ran out: silent, no goodbye

    assert deliver_copy(redelivered=False) == 1

    row = TaskDelivery.objects.get(task_id="t-1")
    assert RAN == [1]
    assert (row.deliveries, row.lost_deliveries) == (2, 1)
