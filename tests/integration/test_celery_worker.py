"""A real `celery worker` process against a real redis-server and the test database."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.core import tasks
from apps.core.domain.states import DeliveryState
from apps.core.models import TaskDelivery
from tests.integration.crashing_tasks import kill_own_worker, sleep
from tests.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_task_round_trips_through_a_real_worker(start_worker):
    start_worker()

    result = tasks.ping.delay("hello").get(timeout=30)

    assert result["pong"] is True
    assert result["note"] == "hello"


def test_a_delivered_task_is_counted_in_the_database(start_worker):
    start_worker()

    async_result = tasks.ping.delay("counted")
    async_result.get(timeout=30)

    row = TaskDelivery.objects.get(task_id=async_result.id)
    assert row.state == DeliveryState.SUCCEEDED
    assert row.deliveries == 1
    assert row.queue == "default"
    assert row.worker.startswith("itest@")


def test_a_task_that_kills_its_worker_is_poisoned_and_the_worker_lives_on(start_worker):
    worker = start_worker(MOC_TASK_MAX_DELIVERIES="2")

    async_result = kill_own_worker.delay()

    def poisoned() -> bool:
        return TaskDelivery.objects.filter(task_id=async_result.id, state=DeliveryState.POISONED).exists()

    wait_until(poisoned, 90, "the crashing task to be poisoned", interval=0.5)
    row = TaskDelivery.objects.get(task_id=async_result.id)
    assert row.deliveries == 3  # two lost deliveries, then the one that was refused
    assert "died 2 times" in row.error
    assert worker.alive()
    assert tasks.ping.delay("after").get(timeout=30)["note"] == "after"


def test_readyz_is_ok_once_a_worker_is_up(start_worker, viewer):
    start_worker()
    client = Client()
    client.force_login(viewer)

    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["checks"]["workers"]["ok"] is True
    assert "itest@" in body["checks"]["workers"]["detail"]


def test_a_task_handed_back_by_a_worker_shutdown_is_not_counted_as_a_crash(start_worker):
    first = start_worker(name="leaving", MOC_WORKER_SOFT_SHUTDOWN_S="1")
    async_result = sleep.delay(8)
    wait_until(lambda: TaskDelivery.objects.filter(task_id=async_result.id).exists(), 30, "the task to start")

    first.stop()  # SIGTERM: warm shutdown, a 1 s soft window, then the task goes back to the broker
    assert TaskDelivery.objects.get(task_id=async_result.id).state == DeliveryState.INTERRUPTED
    start_worker(name="arriving")

    assert async_result.get(timeout=60) == 8
    row = TaskDelivery.objects.get(task_id=async_result.id)
    assert row.state == DeliveryState.SUCCEEDED
    assert row.deliveries == 2
    assert row.lost_deliveries == 0
