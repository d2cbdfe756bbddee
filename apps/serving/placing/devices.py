"""The scheduler's picture of devices: capacity, what MOC holds there, what they report free, and the
placements on them as eviction candidates.

A device that keeps weights in host memory (the CPU, a simulated GPU) offers only its part of a share
of its host's RAM (apps.fleet.domain.capacity), so what MOC places on a node's host-memory devices
together never exceeds that share, telemetry or not. It is also bounded by the host's available
memory, as the node's own telemetry last reported it, less the loads not yet done there
(`host_unseen`): the web process may run on another machine, so its own psutil would read the wrong
host. That report is up to a sample old, and absent while Redis is, so the device worker checks the
host itself as each load starts (apps.serving.worker.loading), against the same loads not yet done.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from apps.core.redis_clients import redis_client
from apps.fleet import telemetry
from apps.fleet.domain.kinds import HOST_MEMORY, MemoryKind, memory_kind
from apps.fleet.domain.states import PLACEABLE_HEALTH, NodeState
from apps.fleet.models import Device
from apps.serving import ledger
from apps.serving.domain import eviction, scheduler
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.models import Placement

P = PlacementState


def device_views(
    devices: Sequence[Device], *, now: float, protect: Iterable[int] = ()
) -> list[scheduler.DeviceView]:
    """The scheduler's picture of `devices`: capacity, what MOC holds there (the memory ledger:
    placements, and what other holders such as running jobs reserved), what the device itself
    reports free, and the placements on it (those in `protect` counted busy, so never victims).

    The device's own report cannot show placements that are still requested or loading, so
    their bytes come off what it reports free; the scheduler then takes the lower of that and
    capacity minus what MOC holds, and memory used outside MOC is respected too."""
    protected = set(protect)
    ids = [d.pk for d in devices]
    placements = Placement.objects.filter(device_id__in=ids, state__in=PLACEMENT_ACTIVE)
    with_dependents = set(
        Placement.objects.filter(depends_on__device_id__in=ids, state__in=PLACEMENT_ACTIVE).values_list(
            "depends_on_id", flat=True
        )
    )
    held = ledger.held(ids)
    reported, host_reported = reported_free_bytes()
    unseen_by_host = host_unseen({d.node.name for d in devices if in_host_memory(d)})
    idle_after = now - settings.MOC_PLACEMENT_IDLE_S
    residents: dict[int, list[eviction.Resident]] = {pk: [] for pk in ids}
    unseen: dict[int, int] = dict.fromkeys(ids, 0)  # promised, not yet in the device's report
    for p in placements:
        if p.state in (P.REQUESTED, P.LOADING):
            unseen[p.device_id] += p.held_bytes
        loaded_at = (p.loaded_at or p.created_at).timestamp()
        last_used = p.last_used_at.timestamp() if p.last_used_at else loaded_at
        busy = p.state != P.LOADED or last_used > idle_after or p.pk in with_dependents or p.pk in protected
        residents[p.device_id].append(
            eviction.Resident(
                placement_id=p.pk,
                version_id=p.version_id,
                size_bytes=p.held_bytes,
                loaded_at=loaded_at,
                last_used=last_used,
                uses=p.use_count,
                load_seconds=p.load_seconds or 1.0,
                pinned=p.pinned,
                busy=busy,
                priority=p.priority,
            )
        )
    return [
        scheduler.DeviceView(
            id=d.pk,
            label=f"{d.node.name} {d.kind} {d.index}",
            node=d.node.name,
            capacity_bytes=d.capacity_bytes,
            placed_bytes=held.get(d.pk, 0),
            reported_free_bytes=None if d.pk not in reported else max(0, reported[d.pk] - unseen[d.pk]),
            host_free_bytes=(
                max(0, host_reported[d.pk] - unseen_by_host.get(d.node.name, 0))
                if d.pk in host_reported and in_host_memory(d)
                else None
            ),
            accepts=d.health in PLACEABLE_HEALTH and d.node.state == NodeState.ONLINE and not d.retired,
            why_not=_why_not(d),
            residents=tuple(residents[d.pk]),
            clock=d.eviction_clock,
        )
        for d in devices
    ]


@transaction.atomic
def device_room(device_id: int, *, now: float) -> int:
    """What the device has free for a new holding now, with its row locked until the caller's
    transaction ends, so a load decided meanwhile counts what the caller then writes."""
    locked = Device.objects.select_for_update(of=("self",)).select_related("node").get(pk=device_id)
    (view,) = device_views([locked], now=now)
    return scheduler.free_bytes(view)


def _why_not(device: Device) -> str:
    if device.retired:
        return "it is retired: its node no longer offers it"
    if device.node.state != NodeState.ONLINE:
        return f"its node is {device.node.state}"
    if device.health not in PLACEABLE_HEALTH:
        return f"it is {device.health}" + (f" ({device.health_reason})" if device.health_reason else "")
    return ""


def memory_kind_of(device: Device) -> MemoryKind:
    """The memory `device`'s models live in (apps.fleet.domain.kinds.memory_kind): what a load
    measured on one device holds for another of the same kind only."""
    return memory_kind(
        kind=device.kind, backend=device.node.backend, simulated=device.simulated, name=device.name
    )


def in_host_memory(device: Device) -> bool:
    """Whether the models loaded onto `device` live in its host's RAM: a CPU device's do, and so do a
    simulated GPU's, which has no memory of its own; only a real GPU's are in the GPU's memory."""
    return memory_kind_of(device) == HOST_MEMORY


def host_unseen(nodes: set[str], *, yielding_to: int | None = None) -> dict[str, int]:
    """Per node, what the loads not yet done on its host-memory devices will take from the host:
    its own figures show at most part of it. With `yielding_to` (a placement whose load starts now),
    only what that load must leave room for: the others loading, and those requested before it. A
    later one still waiting defers to it: of two loads the host has room for only one of, the
    earlier starts, rather than each refusing for the other."""
    if not nodes:
        return {}
    starting = Placement.objects.filter(
        device__node__name__in=nodes, state__in=[P.REQUESTED, P.LOADING]
    ).select_related("device__node")
    if yielding_to is not None:
        starting = starting.exclude(pk=yielding_to).filter(Q(state=P.LOADING) | Q(pk__lt=yielding_to))
    unseen: dict[str, int] = {}
    for p in starting:
        if in_host_memory(p.device):
            unseen[p.device.node.name] = unseen.get(p.device.node.name, 0) + p.held_bytes
    return unseen


def reported_free_bytes() -> tuple[dict[int, int], dict[int, int]]:
    """Free memory per device id as the devices last reported it, and their host's available memory
    for devices that report it; both empty when Redis is away (the scheduler then goes by what MOC
    placed alone, and the worker's own check at load start)."""
    try:
        nodes = telemetry.latest(redis_client())
    except redis.RedisError:
        return {}, {}
    devices = [d for node in nodes for d in node.get("devices", []) if isinstance(d.get("id"), int)]
    return (
        {d["id"]: int(d["mem_free_bytes"]) for d in devices if isinstance(d.get("mem_free_bytes"), int)},
        {d["id"]: int(d["host_free_bytes"]) for d in devices if isinstance(d.get("host_free_bytes"), int)},
    )
