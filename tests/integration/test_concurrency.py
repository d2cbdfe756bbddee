"""Races that only a real database settles: many workers touching one row at once.

Marked `postgres` as well: scripts/test.sh runs these again against a PostgreSQL server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import close_old_connections, connection

from apps.core.delivery import delivery_begin
from apps.core.domain.states import DeliveryState
from apps.core.models import TaskDelivery

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_concurrently(fn: Callable[[], object], count: int) -> list[object]:
    barrier = threading.Barrier(count)
    results: list[object] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(fn())
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_simultaneous_deliveries_of_one_message_are_all_counted(settings):
    settings.MOC_TASK_MAX_DELIVERIES = 100

    def deliver() -> bool:
        return delivery_begin(
            task_id="t-race", task_name="race", queue="default", worker="w", args=[], kwargs={}
        )

    results = run_concurrently(deliver, 8)

    assert results == [True] * 8
    row = TaskDelivery.objects.get(task_id="t-race")
    assert row.deliveries == 8
    assert row.state == DeliveryState.RUNNING


def test_only_one_of_many_racing_redeliveries_crosses_the_poison_limit(settings):
    settings.MOC_TASK_MAX_DELIVERIES = 3
    delivery_begin(task_id="t-poison", task_name="race", queue="default", worker="w", args=[], kwargs={})

    def deliver() -> bool:
        return delivery_begin(
            task_id="t-poison", task_name="race", queue="default", worker="w", args=[], kwargs={}
        )

    results = run_concurrently(deliver, 6)

    assert results.count(True) == 2  # deliveries 2 and 3; the 4th poisons, the rest are refused
    row = TaskDelivery.objects.get(task_id="t-poison")
    assert row.state == DeliveryState.POISONED
    assert row.deliveries == 4
