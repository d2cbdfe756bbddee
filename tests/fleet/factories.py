"""factory_boy factories for the fleet's tables."""

from __future__ import annotations

import time
from typing import Any

import factory
import redis
from django.utils import timezone

from apps.core import workers
from apps.fleet.domain.kinds import Backend, DeviceKind
from apps.fleet.models import Device, Node, TelemetrySample

GIB = 1024**3


class NodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Node

    name = factory.Sequence(lambda n: f"node-{n}")
    hostname = factory.LazyAttribute(lambda o: f"{o.name}.lab")
    backend = Backend.NVML
    cpu_model = "AMD EPYC 9454"
    cpu_count = 48
    ram_bytes = 512 * GIB


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    node = factory.SubFactory(NodeFactory)
    index = factory.Sequence(lambda n: n)
    uuid = factory.Sequence(lambda n: f"GPU-{n:08d}-0000-0000-0000-000000000000")
    name = "NVIDIA H100 80GB HBM3"
    kind = DeviceKind.GPU
    simulated = False
    memory_total_bytes = 80 * GIB
    capacity_bytes = 76 * GIB


class TelemetrySampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TelemetrySample

    device = factory.SubFactory(DeviceFactory)
    at = factory.LazyFunction(timezone.now)
    gpu_util = 50.0
    mem_used_bytes = 10 * GIB
    temperature_c = 60.0


def worker_beat(
    client: redis.Redis, device: Device, *, started: float | None = None, **kwargs: Any
) -> workers.Heard:
    """A heartbeat of `device`'s worker (`<queue>@box`), written as a worker writes it; what was heard."""
    workers.beat(
        client, f"{device.queue}@box", [device.queue], time.time() if started is None else started, **kwargs
    )
    return workers.queue_heard(device.queue, client)[0]
