"""The fleet agent in-process, with simulated GPUs, the real database and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test.utils import override_settings

from apps.core.redis_clients import redis_client
from apps.fleet import registration, telemetry
from apps.fleet.agent import Agent, serves_this_node
from apps.fleet.devices.sim import SimBackend
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.fleet.models import Device, Node, TelemetrySample
from apps.jobs.domain.states import JobState
from apps.serving.domain.states import PlacementState
from tests.jobs.factories import JobFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024**3
T0 = 1_795_000_000.0


@pytest.fixture
def agent() -> Iterator[Agent]:
    with override_settings(MOC_DEVICES="sim:2x24GiB", MOC_TELEMETRY_STORE_S=10, MOC_NODE_HEARTBEAT_S=10):
        made = Agent(node_name="simbox", owner="worker-a")
        made.register()
        yield made
        made.stop()


def last_message() -> dict:
    (message,) = telemetry.latest(redis_client())
    return message


def test_one_message_carries_every_device_labelled_simulated(agent: Agent) -> None:
    agent.tick(T0)

    message = last_message()
    ids = list(Device.objects.filter(node__name="simbox").order_by("index").values_list("pk", flat=True))
    assert (message["type"], message["node"], message["backend"], message["seq"]) == (
        "telemetry",
        "simbox",
        "sim",
        1,
    )
    assert message["simulated"] is True
    assert [d["id"] for d in message["devices"]] == ids
    assert all(d["simulated"] and d["name"].startswith("Simulated GPU") for d in message["devices"])


def test_only_the_agent_holding_the_nodes_lock_samples(agent: Agent) -> None:
    with override_settings(MOC_DEVICES="sim:2x24GiB"):
        second = Agent(node_name="simbox", owner="worker-b")
    second.register()

    agent.tick(T0)
    second.tick(T0)
    agent.tick(T0 + 1)

    assert (agent.sampling, second.sampling) == (True, False)
    assert last_message()["seq"] == 2
    second.stop()


def test_a_failing_device_turns_unhealthy_while_the_others_keep_reporting(agent: Agent) -> None:
    assert isinstance(agent.backend, SimBackend)
    agent.backend.fail(1, "GPU is lost")

    agent.tick(T0)

    healthy, failing = last_message()["devices"]
    assert (healthy["error"], healthy["gpu_util"] is not None) == ("", True)
    assert failing["error"] == "GPU is lost"
    assert failing["health"] == DeviceHealth.UNHEALTHY
    device = Device.objects.get(node__name="simbox", index=1)
    assert (device.health, device.health_reason) == (DeviceHealth.UNHEALTHY, "GPU is lost")


def test_a_recovered_device_earns_healthy_back_through_degraded(agent: Agent) -> None:
    agent.backend.fail(1)
    agent.tick(T0)
    agent.backend.recover(1)

    agent.tick(T0 + 1)
    after_one = Device.objects.get(node__name="simbox", index=1).health
    agent.tick(T0 + 2)

    assert after_one == DeviceHealth.DEGRADED
    assert Device.objects.get(node__name="simbox", index=1).health == DeviceHealth.HEALTHY


def test_simulated_memory_follows_what_moc_placed(agent: Agent) -> None:
    device = Device.objects.get(node__name="simbox", index=0)
    PlacementFactory(device=device, reserved_bytes=6 * GIB, state=PlacementState.LOADED)

    agent.tick(T0)

    placed, idle = last_message()["devices"]
    assert 6 * GIB <= placed["mem_used_bytes"] < 7 * GIB
    assert idle["mem_used_bytes"] < GIB


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.CANCELLING])
def test_simulated_load_follows_a_job_still_running_on_the_device(agent: Agent, state: JobState) -> None:
    device = Device.objects.get(node__name="simbox", index=1)
    JobFactory(device=device, queue=device.queue, state=state)

    for second in range(6):
        agent.tick(T0 + second)

    idle, busy = last_message()["devices"]
    assert idle["gpu_util"] == 0
    assert busy["gpu_util"] > 50


def test_each_window_is_stored_as_one_row_per_device(agent: Agent) -> None:
    for second in range(12):
        agent.tick(T0 + second)

    rows = TelemetrySample.objects.filter(device__node__name="simbox")
    assert rows.count() == 2
    assert all(row.temperature_c is not None for row in rows)


def test_a_node_swept_offline_while_its_agent_lives_comes_back_online(agent: Agent) -> None:
    Node.objects.filter(name="simbox").update(last_heartbeat_at="2020-01-01T00:00:00Z")
    registration.nodes_mark_offline()
    assert Node.objects.get(name="simbox").state == NodeState.OFFLINE

    agent.tick(T0)

    assert Node.objects.get(name="simbox").state == NodeState.ONLINE
    assert set(Device.objects.values_list("health", flat=True)) == {DeviceHealth.HEALTHY}
    assert last_message()["node"] == "simbox"  # live again


@pytest.mark.parametrize(
    ("queues", "serves"),
    [(["gpu.simbox.0"], True), (["cpu.simbox.0"], True), (["default"], False), (["gpu.other.0"], False)],
)
def test_only_workers_of_this_nodes_devices_run_the_agent(queues: list[str], serves: bool) -> None:
    with override_settings(MOC_NODE_NAME="simbox"):
        assert serves_this_node(queues) is serves
