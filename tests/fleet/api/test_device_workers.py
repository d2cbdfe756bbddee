"""The worker of each device's queue in the device and node API: alive or silent since when,
and its restarts after a crash, read from the heartbeats in one Redis round trip per page."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import time_machine
from rest_framework.test import APIClient

from apps.core import workers
from apps.core.domain.roles import Role
from apps.core.workers import Restart
from tests.fleet.factories import DeviceFactory, NodeFactory, worker_beat
from tests.procs import RedisServer, free_port

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def test_a_device_shows_its_live_worker_and_its_restarts_after_crashes(
    client_as: Client, redis_server: RedisServer
) -> None:
    device = DeviceFactory()
    restart = Restart(
        count=2, at=time.time() - 5, dead_pid=4242, dead_started=1000.0, dead_seen=time.time() - 9
    )
    last = worker_beat(redis_server.client(), device, started=restart.at, restart=restart)

    response = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/")

    assert response.status_code == 200
    assert response.json()["worker"] == {
        "hostname": f"{device.queue}@box",
        "pid": last.pid,
        "status": "alive",
        "alive": True,
        "started_at": iso(restart.at),
        "last_seen_at": iso(last.seen),
        "silent_since": None,
        "restarts": 2,
        "last_restart_at": iso(restart.at),
        "dead_run_pid": 4242,
        "dead_run_last_seen_at": iso(restart.dead_seen),
    }


def test_a_device_whose_worker_went_quiet_says_since_when(
    client_as: Client, redis_server: RedisServer
) -> None:
    device = DeviceFactory()
    with time_machine.travel(time.time() - 30, tick=False):  # its last beat, 30 s ago
        last = worker_beat(redis_server.client(), device)
    redis_server.client().delete(f"{workers.KEY_PREFIX}{last.hostname}")  # its TTL ran out

    worker = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/").json()["worker"]

    assert (worker["status"], worker["alive"], worker["restarts"]) == ("silent", False, 0)
    assert worker["silent_since"] == worker["last_seen_at"] == iso(last.seen)
    assert worker["last_restart_at"] is None


def test_a_device_whose_worker_clock_runs_behind_shows_it_alive(
    client_as: Client, redis_server: RedisServer
) -> None:
    device = DeviceFactory()
    with time_machine.travel(time.time() - 30, tick=False):  # its clock: 30 s behind the web's
        last = worker_beat(redis_server.client(), device)

    worker = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/").json()["worker"]

    assert (worker["status"], worker["alive"], worker["silent_since"]) == ("alive", True, None)
    assert worker["last_seen_at"] == iso(last.seen)


def test_a_device_whose_worker_stopped_cleanly_says_stopped(
    client_as: Client, redis_server: RedisServer
) -> None:
    device = DeviceFactory()
    last = worker_beat(redis_server.client(), device, stopped=True)

    worker = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/").json()["worker"]

    assert (worker["status"], worker["silent_since"]) == ("stopped", iso(last.seen))


def test_a_device_no_worker_was_ever_heard_of_has_no_worker(client_as: Client) -> None:
    device = DeviceFactory()

    assert client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/").json()["worker"] is None


def test_the_device_list_still_answers_while_redis_is_down(client_as: Client, settings: Any) -> None:
    DeviceFactory()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = client_as(Role.VIEWER).get("/api/v1/devices/")

    assert response.status_code == 200
    assert [row["worker"] for row in response.json()["results"]] == [None]


def test_a_node_lists_the_worker_of_each_of_its_devices(client_as: Client, redis_server: RedisServer) -> None:
    node = NodeFactory(name="box")
    served, idle = DeviceFactory(node=node, index=0), DeviceFactory(node=node, index=1)
    restart = Restart(count=1, at=time.time() - 3, dead_pid=7, dead_started=10.0, dead_seen=time.time() - 8)
    worker_beat(redis_server.client(), served, started=restart.at, restart=restart)

    [row] = client_as(Role.VIEWER).get("/api/v1/nodes/").json()["results"]

    by_queue = {d["queue"]: d["worker"] for d in row["devices"]}
    assert by_queue[idle.queue] is None
    assert by_queue[served.queue]["restarts"] == 1
    assert by_queue[served.queue]["dead_run_pid"] == 7


class RoundTrips:
    """Counts the commands and pipelines MOC's Redis clients send."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for cls, name in ((redis.Redis, "execute_command"), (redis.client.Pipeline, "execute")):
            original = getattr(cls, name)

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.count += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(cls, name, counted)


@pytest.mark.parametrize("url", ["/api/v1/devices/", "/api/v1/nodes/"])
def test_a_page_reads_its_workers_in_the_same_round_trips_for_one_device_or_many(
    client_as: Client, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    client = client_as(Role.VIEWER)
    worker_beat(redis_server.client(), DeviceFactory())
    trips = RoundTrips(monkeypatch)
    client.get(url)
    one, trips.count = trips.count, 0

    for _ in range(4):
        worker_beat(redis_server.client(), DeviceFactory())
    trips.count = 0
    response = client.get(url)

    assert response.status_code == 200
    assert trips.count == one
