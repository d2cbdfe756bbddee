"""Nodes registering, heartbeating, and going offline when they fall silent."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.fleet import registration, telemetry
from apps.fleet.devices.base import DeviceInfo, NodeInfo
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.fleet.models import Device, Node
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import DeviceFactory, NodeFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024**3
INFO = NodeInfo(
    hostname="box-1.lab",
    cpu_model="AMD EPYC",
    cpu_count=32,
    ram_bytes=256 * GIB,
    driver_version="simulated",
    cuda_version="",
    backend="sim",
)


def gpu(index: int, uuid: str | None = None) -> DeviceInfo:
    return DeviceInfo(
        index=index,
        uuid=uuid or f"SIM-{index}",
        name="Simulated GPU 24 GiB",
        kind="gpu",
        simulated=True,
        memory_total_bytes=24 * GIB,
        capacity_bytes=22 * GIB,
    )


def next_published(listener: redis.client.PubSub) -> bytes:
    """The next message on the channel (get_message answers None for the subscription itself)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.5)
        if message is not None:
            return message["data"]
    raise AssertionError("nothing was published")


def test_registering_records_the_node_and_its_devices() -> None:
    node, devices = registration.node_register(name="box-1", info=INFO, devices=[gpu(0), gpu(1)])

    node.refresh_from_db()
    assert (node.hostname, node.backend, node.state) == ("box-1.lab", "sim", NodeState.ONLINE)
    assert node.last_heartbeat_at is not None
    assert [(d.index, d.uuid, d.simulated, d.capacity_bytes) for d in devices] == [
        (0, "SIM-0", True, 22 * GIB),
        (1, "SIM-1", True, 22 * GIB),
    ]
    assert [d.queue for d in devices] == ["gpu.box-1.0", "gpu.box-1.1"]


def test_registering_again_updates_rows_instead_of_adding_them() -> None:
    registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])

    registration.node_register(name="box-1", info=INFO, devices=[gpu(0, uuid="SIM-new")])

    assert Node.objects.count() == 1
    assert list(Device.objects.values_list("uuid", flat=True)) == ["SIM-new"]


def test_a_device_no_longer_found_becomes_unavailable_with_the_reason() -> None:
    registration.node_register(name="box-1", info=INFO, devices=[gpu(0), gpu(1)])

    registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])

    gone = Device.objects.get(index=1)
    assert gone.health == DeviceHealth.UNAVAILABLE
    assert "not found" in gone.health_reason


def cpu() -> DeviceInfo:
    return DeviceInfo(
        index=0,
        uuid="CPU-box-1",
        name="AMD EPYC (host memory)",
        kind="cpu",
        simulated=False,
        memory_total_bytes=64 * GIB,
        capacity_bytes=32 * GIB,
    )


def test_the_cpu_device_is_retired_when_the_node_restarts_with_simulated_gpus() -> None:
    registration.node_register(name="box-1", info=INFO, devices=[cpu()])

    _, offered = registration.node_register(name="box-1", info=INFO, devices=[gpu(0), gpu(1)])

    retired = Device.objects.get(kind="cpu")
    assert retired.retired
    assert retired.retired_at is not None
    assert [d.retired for d in offered] == [False, False]
    assert list(Device.objects.filter(retired_at=None).values_list("kind", flat=True)) == ["gpu", "gpu"]


def test_a_retired_device_offered_again_is_no_longer_retired() -> None:
    registration.node_register(name="box-1", info=INFO, devices=[cpu()])
    registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])

    _, (back,) = registration.node_register(name="box-1", info=INFO, devices=[cpu()])

    assert back.kind == "cpu"
    assert back.retired_at is None
    back.refresh_from_db()
    assert back.retired_at is None
    assert Device.objects.get(kind="gpu").retired


def test_registering_again_keeps_a_device_retirement_time() -> None:
    registration.node_register(name="box-1", info=INFO, devices=[cpu()])
    registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])
    first = Device.objects.get(kind="cpu").retired_at

    registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])

    assert Device.objects.get(kind="cpu").retired_at == first


def test_a_gpu_moved_from_another_node_takes_its_uuid_along() -> None:
    old = DeviceFactory(uuid="SIM-0")

    _, (device,) = registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])

    old.refresh_from_db()
    assert device.uuid == "SIM-0"
    assert old.uuid == f"SIM-0~{old.pk}"


def test_heartbeat_says_the_node_state_or_none_when_unknown() -> None:
    NodeFactory(name="box-1", state=NodeState.DRAINING)

    assert registration.node_heartbeat(name="box-1") == NodeState.DRAINING
    assert registration.node_heartbeat(name="nobody") is None


def test_a_silent_node_goes_offline_with_its_devices_and_placements() -> None:
    now = timezone.now()
    node = NodeFactory(name="box-1", last_heartbeat_at=now - timedelta(seconds=61))
    device = DeviceFactory(node=node)
    placement = PlacementFactory(device=device, state=PlacementState.LOADED)
    client = redis_client()
    telemetry.publish(
        client, telemetry.telemetry_message(node="box-1", node_id=node.pk, at=1.0, backend="sim", devices=[])
    )
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(telemetry.CHANNEL)

    went = registration.nodes_mark_offline(now=now)

    assert went == ["box-1"]
    node.refresh_from_db()
    device.refresh_from_db()
    placement.refresh_from_db()
    assert node.state == NodeState.OFFLINE
    assert device.health == DeviceHealth.UNAVAILABLE
    assert "no heartbeat from node box-1" in device.health_reason
    assert placement.state == PlacementState.LOST
    assert placement.ended_at is not None
    assert "no heartbeat" in placement.error
    assert json.loads(next_published(listener))["state"] == "offline"
    assert telemetry.latest(client) == []  # its last reading no longer shows as live


def test_a_node_within_its_grace_period_stays_online() -> None:
    now = timezone.now()
    NodeFactory(name="box-1", last_heartbeat_at=now - timedelta(seconds=59))

    assert registration.nodes_mark_offline(now=now) == []
    assert Node.objects.get().state == NodeState.ONLINE


def test_an_offline_node_that_registers_again_is_back_with_healthy_devices() -> None:
    registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])
    Node.objects.update(last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    registration.nodes_mark_offline()

    node, (device,) = registration.node_register(name="box-1", info=INFO, devices=[gpu(0)])

    node.refresh_from_db()
    device.refresh_from_db()
    assert node.state == NodeState.ONLINE
    assert device.health == DeviceHealth.HEALTHY
    assert device.health_reason == ""
