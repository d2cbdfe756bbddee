"""A real device worker SIGKILLed mid-task and started again: the restart is recorded, shown by the
device API with when the dead run was last heard, and the task it was running is marked lost,
not left running until the broker's visibility timeout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.delivery import deliveries_reconcile
from apps.core.domain.roles import Role
from apps.core.domain.states import DeliveryState
from apps.core.models import TaskDelivery
from apps.fleet.models import Device
from tests.integration.crashing_tasks import sleep
from tests.procs import Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-restart"
QUEUE = f"gpu.{NODE}.0"


def test_a_killed_device_worker_started_again_is_shown_restarted_and_its_task_lost(
    start_worker: Callable[..., Process], client_as: Callable[[Role | None], APIClient]
) -> None:
    def start() -> Process:
        return start_worker(
            queues=QUEUE, pool="threads", name="restart0", MOC_DEVICES="sim:1x24GiB", MOC_NODE_NAME=NODE
        )

    first = start()
    wait_until(
        lambda: Device.objects.filter(node__name=NODE).exists(), 30, "the worker to register its device"
    )
    device = Device.objects.get(node__name=NODE)
    api = client_as(Role.VIEWER)
    running = sleep.apply_async(args=[120], queue=QUEUE)
    wait_until(lambda: TaskDelivery.objects.filter(task_id=running.id).exists(), 30, "the task to start")
    dead_pid = first.proc.pid

    first.kill()
    second = start()

    def restart_shown() -> bool:
        worker = api.get(f"/api/v1/devices/{device.pk}/").json()["worker"]
        return worker["pid"] == second.proc.pid and worker["restarts"] == 1

    wait_until(restart_shown, 30, "the device API to show the restart", interval=0.5)
    worker = api.get(f"/api/v1/devices/{device.pk}/").json()["worker"]
    assert (worker["status"], worker["dead_run_pid"]) == ("alive", dead_pid)
    assert worker["dead_run_last_seen_at"] < worker["last_restart_at"] == worker["started_at"]
    assert "restarted after a crash" in second.output()

    assert deliveries_reconcile() == {"lost": 1, "interrupted": 0}
    row = TaskDelivery.objects.get(task_id=running.id)
    assert (row.state, row.lost_deliveries) == (DeliveryState.LOST, 1)
    assert f"(pid {dead_pid}) died while running it" in row.error
    assert row.worker in row.error
