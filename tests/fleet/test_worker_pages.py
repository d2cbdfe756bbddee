"""The device and node pages say whether the worker of each device's queue is alive, since when
it is silent, and that it restarted after a crash and when."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from apps.core import workers
from apps.core.domain.roles import Role
from apps.core.templatetags.moc import when
from apps.core.workers import Restart
from tests.fleet.factories import DeviceFactory, NodeFactory, worker_beat
from tests.procs import RedisServer, free_port

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def page(client_as: Client, obj: Any) -> str:
    response = client_as(Role.VIEWER).get(obj.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def shown(epoch: float) -> str:
    return when(dt.datetime.fromtimestamp(epoch, tz=dt.UTC))


def test_the_device_page_shows_its_worker_restarted_after_a_crash_and_when(
    client_as: Client, redis_server: RedisServer
) -> None:
    device = DeviceFactory()
    restart = Restart(
        count=3, at=time.time() - 5, dead_pid=4242, dead_started=10.0, dead_seen=time.time() - 9
    )
    worker_beat(redis_server.client(), device, started=restart.at, restart=restart)

    html = page(client_as, device)

    assert f"<code>{device.queue}@box</code>" in html
    assert "data-worker-status>alive<" in html
    assert 'data-worker-restarts="3">restarted 3× after a crash' in html
    assert f"latest {shown(restart.at)}" in html
    assert f"the run that died (pid 4242) was last heard {shown(restart.dead_seen)}" in html


def test_the_device_page_says_since_when_its_worker_is_silent(
    client_as: Client, redis_server: RedisServer
) -> None:
    device = DeviceFactory()
    with time_machine.travel(time.time() - 60, tick=False):
        last = worker_beat(redis_server.client(), device)
    redis_server.client().delete(f"{workers.KEY_PREFIX}{last.hostname}")  # its TTL ran out

    html = page(client_as, device)

    assert "data-worker-status>silent<" in html
    assert f"silent since {shown(last.seen)}" in html
    assert "restarted" not in html


def test_the_device_page_says_when_no_worker_was_ever_heard_of(client_as: Client) -> None:
    device = DeviceFactory()

    assert f"no worker of <code>{device.queue}</code> was ever heard of" in page(client_as, device)


def test_the_device_page_still_renders_while_redis_is_down(client_as: Client, settings: Any) -> None:
    device = DeviceFactory()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    assert "unknown: Redis cannot be read" in page(client_as, device)


def test_the_node_page_lists_the_worker_of_each_of_its_devices(
    client_as: Client, redis_server: RedisServer
) -> None:
    node = NodeFactory(name="box")
    served, idle = DeviceFactory(node=node, index=0), DeviceFactory(node=node, index=1)
    restart = Restart(count=1, at=time.time() - 2, dead_pid=77, dead_started=10.0, dead_seen=time.time() - 7)
    worker_beat(redis_server.client(), served, started=restart.at, restart=restart)

    html = page(client_as, node)

    assert f'<span data-worker="{served.pk}"><code>{served.queue}@box</code>' in html
    assert 'data-worker-restarts="1">restarted 1× after a crash' in html
    assert f"(pid 77) was last heard {shown(restart.dead_seen)}" in html
    assert f"no worker of <code>{idle.queue}</code> was ever heard of" in html
