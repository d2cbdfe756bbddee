"""Messages queued under a task's old name, from before serving moved out of fleet, still run after
an upgrade: moc_site/celery.py registers every old name in apps.serving.messages.LEGACY_NAMES as its
new task, so a worker finds the task a message names either way."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from apps.serving import messages
from apps.serving import tasks as serving_tasks
from moc_site.celery import app
from tests.procs import Process, RedisServer, wait_until

NODE = "itest-legacy"
QUEUE = f"gpu.{NODE}.0"
OLD_PING = "apps.fleet.tasks.device_ping"


def test_every_old_task_name_is_its_new_task_once_a_worker_imported_the_task_modules() -> None:
    app.loader.import_default_modules()  # what a worker does as it starts, before it takes messages

    for old, new in messages.LEGACY_NAMES.items():
        assert app.tasks[old] is app.tasks[new], old


def test_the_old_device_ping_name_is_servings_device_ping() -> None:
    app.loader.import_default_modules()

    assert app.tasks[OLD_PING].name == serving_tasks.device_ping.name == messages.DEVICE_PING


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_device_worker_runs_a_ping_sent_under_its_old_fleet_name(
    start_worker: Callable[..., Process], redis_server: RedisServer
) -> None:
    worker = start_worker(
        queues=QUEUE, pool="threads", name="legacy0", MOC_DEVICES="sim:1x24GiB", MOC_NODE_NAME=NODE
    )
    reply_key = f"moc:reply:{uuid.uuid4().hex}"

    result = app.send_task(OLD_PING, args=[reply_key], queue=QUEUE)

    answered = redis_server.client().blpop([reply_key], timeout=30)
    assert answered is not None, f"no answer on the reply list; worker log:\n{worker.output()[-3000:]}"
    assert json.loads(answered[1])["ok"] is True
    assert result.get(timeout=10)["ok"] is True
    # Run under the name it was sent with: the worker found the old name in its registry.
    wait_until(lambda: f"{OLD_PING}[{result.id}] succeeded" in worker.output(), 10, "the worker to log it")
