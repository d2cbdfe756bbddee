"""Reads of the fleet, for the API, the pages and the Overview."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.urls import reverse

from apps.core import workers
from apps.core.domain.units import format_bytes
from apps.core.redis_clients import redis_client
from apps.fleet import holdings
from apps.fleet.domain.kinds import Resolution
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.fleet.models import Device, Node, TelemetrySample


def _latest_raw() -> QuerySet[TelemetrySample]:
    return TelemetrySample.objects.filter(device=OuterRef("pk"), resolution_s=Resolution.RAW).order_by("-at")


def device_list() -> QuerySet[Device]:
    """Devices with the memory MOC holds there (`reserved_bytes`, and `active_placements`, from
    apps.fleet.holdings) and their latest raw reading."""
    latest = _latest_raw()
    return (
        holdings.provider()
        .annotate(Device.objects.select_related("node"))
        .annotate(
            last_sample_at=Subquery(latest.values("at")[:1]),
            last_gpu_util=Subquery(latest.values("gpu_util")[:1]),
            last_mem_used_bytes=Subquery(latest.values("mem_used_bytes")[:1]),
            last_temperature_c=Subquery(latest.values("temperature_c")[:1]),
        )
        .order_by("node__name", "kind", "index")
    )


def node_list() -> QuerySet[Node]:
    return Node.objects.prefetch_related(
        Prefetch("devices", queryset=device_list().order_by("kind", "index"))
    ).order_by("name")


def device_panel_list() -> QuerySet[Device]:
    """device_list() with the rest of what a GPUs page draws for a device: its power. What it holds
    comes from with_holdings()."""
    return device_list().annotate(last_power_w=Subquery(_latest_raw().values("power_w")[:1]))


def with_holdings(devices: Iterable[Device]) -> list[Device]:
    """`devices`, each given `holding_list`: what is on it (apps.fleet.holdings), in one ask."""
    devices = list(devices)
    held = holdings.provider().holdings([d.pk for d in devices])
    for device in devices:
        device.holding_list = held.get(device.pk, [])
    return devices


def node_panel_list() -> QuerySet[Node]:
    """Nodes with the devices they offer as device_panel_list() reads them (`offered_devices`) and
    those they no longer offer (`retired_devices`, newest retired first): a fixed number of queries
    for any number of nodes."""
    return Node.objects.prefetch_related(
        Prefetch(
            "devices",
            queryset=device_panel_list().filter(retired_at=None).order_by("kind", "index"),
            to_attr="offered_devices",
        ),
        Prefetch(
            "devices",
            queryset=Device.objects.exclude(retired_at=None).order_by("-retired_at", "kind", "index"),
            to_attr="retired_devices",
        ),
    ).order_by("name")


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


@dataclass(frozen=True, slots=True)
class WorkerFacts:
    """The worker of a device's queue as its heartbeats tell it (apps.core.workers)."""

    hostname: str
    pid: int
    status: str  # workers.WorkerStatus: alive, silent (taken for dead) or stopped (cleanly)
    started_at: datetime
    last_seen_at: datetime
    restarts: int  # starts under its hostname after a run that died (no goodbye)
    last_restart_at: datetime | None
    dead_run_pid: int | None  # the run that died before the latest restart
    dead_run_last_seen_at: datetime | None

    @property
    def alive(self) -> bool:
        return self.status == workers.WorkerStatus.ALIVE

    @property
    def silent_since(self) -> datetime | None:
        """When it was last heard of, once it is not alive."""
        return None if self.alive else self.last_seen_at


def worker_facts(heard: list[workers.Heard]) -> WorkerFacts | None:
    """The worker a queue's beats (latest first) tell of: a live one, else the last heard."""
    chosen = next((h for h in heard if h.alive), heard[0] if heard else None)
    if chosen is None:
        return None
    restart = chosen.restart
    return WorkerFacts(
        hostname=chosen.hostname,
        pid=chosen.pid,
        status=chosen.status(),
        started_at=_moment(chosen.started),
        last_seen_at=_moment(chosen.seen),
        restarts=restart.count if restart else 0,
        last_restart_at=_moment(restart.at) if restart else None,
        dead_run_pid=restart.dead_pid if restart else None,
        dead_run_last_seen_at=_moment(restart.dead_seen) if restart else None,
    )


def with_workers(devices: Iterable[Device]) -> list[Device]:
    """`devices`, each given `worker` (the WorkerFacts of its queue's worker; None when none was
    ever heard of, or Redis cannot be read) and `worker_known` (False when Redis cannot be read),
    in one Redis round trip for them all: a page of devices costs one, not one per device."""
    devices = list(devices)
    try:
        heard, known = workers.queues_heard({d.queue for d in devices}, redis_client(timeout=1.0)), True
    except redis.RedisError:  # the pages and the API still answer while Redis is down
        heard, known = {}, False
    for device in devices:
        device.worker = worker_facts(heard.get(device.queue, []))
        device.worker_known = known
    return devices


@dataclass(frozen=True, slots=True)
class MemorySegment:
    """One stretch of a device's memory bar: a placement, memory MOC did not place, or free memory."""

    kind: str  # "placement", "other" or "free": static/js/gpus.js finds the stretches by it
    width: str  # percent of the bar, written for a style attribute whatever the locale
    title: str
    url: str = ""


def memory_segments(*, device: Device) -> list[MemorySegment]:
    """A with_holdings() device's memory split by what occupies it, for the bar the pages draw
    (static/js/gpus.js redraws it alike from each reading).

    "other" is the latest reading's used memory beyond what placements hold: processes and
    jobs MOC did not place. When placements claim more than the device has, the bar is
    scaled to their sum so every stretch still shows.
    """
    placements = [h for h in device.holding_list if h.kind == "placement"]
    placed = sum(h.held_bytes for h in placements)
    used = device.last_mem_used_bytes
    other = 0 if used is None else max(0, used - placed)
    total = device.memory_total_bytes
    whole = max(total, placed + other) or 1
    free = max(0, total - placed - other)

    def width(size: int) -> str:
        return f"{100 * size / whole:.2f}"

    running = ", ".join(h.label for h in device.holding_list if h.kind == "job") or "no MOC job"
    return [
        *(
            MemorySegment(
                kind="placement",
                width=width(h.held_bytes),
                title=f"{h.label} ({h.state}): {format_bytes(h.held_bytes)}",
                url=h.url,
            )
            for h in placements
        ),
        MemorySegment(
            kind="other",
            width=width(other),
            title=f"Not placed by MOC: {format_bytes(other)}. Running here: {running}",
        ),
        MemorySegment(kind="free", width=width(free), title=f"Free: {format_bytes(free)}"),
    ]


def device_panel_data(*, device: Device) -> dict[str, Any]:
    """What static/js/gpus.js needs of a with_holdings() device_list() device to redraw it from
    telemetry, and its poll of what MOC holds there (apps.fleet.views.devices_live)."""
    return {
        "id": device.pk,
        "node": device.node.name,
        "kind": device.kind,
        "index": device.index,
        "name": device.name,
        "simulated": device.simulated,
        "memory_total_bytes": device.memory_total_bytes,
        "reserved_bytes": device.reserved_bytes,
        "mem_used_bytes": device.last_mem_used_bytes,
        "placements": [
            {"label": h.label, "state": h.state, "bytes": h.held_bytes, "url": h.url}
            for h in device.holding_list
            if h.kind == "placement"
        ],
        "jobs": [{"label": h.label, "url": h.url} for h in device.holding_list if h.kind == "job"],
    }


def fleet_totals() -> dict[str, Any]:
    """The Overview's fleet figures from the latest stored reading of every device offered by a node
    that is not offline; static/js/fleet-totals.js recomputes them from live telemetry, which
    carries only what nodes offer."""
    devices = list(device_list().filter(retired_at=None).exclude(node__state=NodeState.OFFLINE))
    utils = [d.last_gpu_util for d in devices if d.last_gpu_util is not None]
    hot = max(
        (d for d in devices if d.last_temperature_c is not None),
        key=lambda d: d.last_temperature_c,
        default=None,
    )
    hottest = hot and {
        "label": f"{hot.node.name} · {hot.kind.upper()} {hot.index}",
        "name": hot.name,
        "temperature_c": hot.last_temperature_c,
    }
    return {
        "devices": len(devices),
        "simulated": sum(d.simulated for d in devices),
        "mem_used_bytes": sum(d.last_mem_used_bytes for d in devices if d.last_mem_used_bytes is not None),
        "mem_total_bytes": sum(d.memory_total_bytes for d in devices),
        "avg_util": sum(utils) / len(utils) if utils else None,
        "hottest": hottest,
    }


def telemetry_sample_list() -> QuerySet[TelemetrySample]:
    return TelemetrySample.objects.all()


def overview_cards() -> list[dict]:
    """GPUs and nodes; devices their nodes no longer offer (retired) are not counted."""
    devices = Device.objects.filter(retired_at=None).aggregate(
        total=Count("pk"),
        gpus=Count("pk", filter=Q(kind="gpu")),
        healthy=Count("pk", filter=Q(health=DeviceHealth.HEALTHY)),
        simulated=Count("pk", filter=Q(simulated=True)),
    )
    nodes = Node.objects.aggregate(total=Count("pk"), online=Count("pk", filter=Q(state=NodeState.ONLINE)))
    device_hint = f"{devices['healthy']} healthy"
    if devices["simulated"]:
        device_hint += f" · {devices['simulated']} simulated"
    if devices["total"] != devices["gpus"]:
        device_hint += f" · {devices['total'] - devices['gpus']} CPU"
    return [
        {
            "label": "GPUs",
            "value": devices["gpus"],
            "url": reverse("fleet:devices"),
            "hint": device_hint if devices["total"] else "no worker has registered yet",
        },
        {
            "label": "Nodes",
            "value": nodes["total"],
            "url": reverse("fleet:devices"),
            "hint": f"{nodes['online']} online",
        },
    ]
