"""Reads of the fleet, for the API, the pages and the Overview."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from apps.fleet.domain.kinds import Resolution
from apps.fleet.domain.states import PLACEMENT_ACTIVE, DeviceHealth, NodeState, PlacementState
from apps.fleet.models import Device, Node, Placement, TelemetrySample
from apps.jobs.domain.states import JOB_ACTIVE
from apps.jobs.models import Job


def _latest_raw() -> QuerySet[TelemetrySample]:
    return TelemetrySample.objects.filter(device=OuterRef("pk"), resolution_s=Resolution.RAW).order_by("-at")


def held_bytes_sum() -> Coalesce:
    """Per device, Placement.held_bytes summed over its active placements in SQL: what loading
    really took once measured, else what was reserved."""
    return Coalesce(
        Sum(
            Coalesce("placements__measured_bytes", "placements__reserved_bytes"),
            filter=Q(placements__state__in=PLACEMENT_ACTIVE),
        ),
        0,
    )


def device_list() -> QuerySet[Device]:
    """Devices with the memory their active placements reserve and their latest raw reading."""
    latest = _latest_raw()
    return (
        Device.objects.select_related("node")
        .annotate(
            reserved_bytes=held_bytes_sum(),
            active_placements=Count("placements", filter=Q(placements__state__in=PLACEMENT_ACTIVE)),
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
    """device_list() with the rest of what a GPUs page draws for a device: its power, what holds
    its memory (active placements) and what a worker runs on it (active jobs)."""
    return (
        device_list()
        .annotate(last_power_w=Subquery(_latest_raw().values("power_w")[:1]))
        .prefetch_related(
            Prefetch(
                "placements",
                queryset=Placement.objects.select_related("version__model")
                .filter(state__in=PLACEMENT_ACTIVE)
                .order_by("created_at", "pk"),
                to_attr="active_placement_list",
            ),
            Prefetch(
                "jobs",
                queryset=Job.objects.filter(state__in=JOB_ACTIVE).order_by("pk"),
                to_attr="running_job_list",
            ),
        )
    )


def node_panel_list() -> QuerySet[Node]:
    """Nodes with their devices as device_panel_list() reads them: a fixed number of queries for any
    number of nodes."""
    return Node.objects.prefetch_related(
        Prefetch("devices", queryset=device_panel_list().order_by("kind", "index"))
    ).order_by("name")


@dataclass(frozen=True, slots=True)
class MemorySegment:
    """One stretch of a device's memory bar: a placement, memory MOC did not place, or free memory."""

    kind: str  # "placement", "other" or "free": static/js/gpus.js finds the stretches by it
    width: str  # percent of the bar, written for a style attribute whatever the locale
    title: str
    url: str = ""


def memory_segments(*, device: Device) -> list[MemorySegment]:
    """A device_panel_list() device's memory split by what occupies it, for the bar the pages draw
    (static/js/gpus.js redraws it alike from each reading).

    "other" is the latest reading's used memory beyond what placements hold: processes and
    jobs MOC did not place. When placements claim more than the device has, the bar is
    scaled to their sum so every stretch still shows.
    """
    sizes = [(p, p.held_bytes) for p in device.active_placement_list]
    placed = sum(size for _, size in sizes)
    used = device.last_mem_used_bytes
    other = 0 if used is None else max(0, used - placed)
    total = device.memory_total_bytes
    whole = max(total, placed + other) or 1
    free = max(0, total - placed - other)

    def width(size: int) -> str:
        return f"{100 * size / whole:.2f}"

    running = ", ".join(str(job) for job in device.running_job_list) or "no MOC job"
    return [
        *(
            MemorySegment(
                kind="placement",
                width=width(size),
                title=f"{p.version} ({p.get_state_display().lower()}): {filesizeformat(size)}",
                url=p.version.get_absolute_url(),
            )
            for p, size in sizes
        ),
        MemorySegment(
            kind="other",
            width=width(other),
            title=f"Not placed by MOC: {filesizeformat(other)}. Running here: {running}",
        ),
        MemorySegment(kind="free", width=width(free), title=f"Free: {filesizeformat(free)}"),
    ]


def device_panel_data(*, device: Device) -> dict[str, Any]:
    """What static/js/gpus.js needs of a device_panel_list() device to redraw it from telemetry."""
    return {
        "id": device.pk,
        "node": device.node.name,
        "kind": device.kind,
        "index": device.index,
        "name": device.name,
        "simulated": device.simulated,
        "memory_total_bytes": device.memory_total_bytes,
        "placements": [
            {"label": str(p.version), "bytes": p.held_bytes, "url": p.version.get_absolute_url()}
            for p in device.active_placement_list
        ],
        "jobs": [{"label": str(job), "url": job.get_absolute_url()} for job in device.running_job_list],
    }


def fleet_totals() -> dict[str, Any]:
    """The Overview's fleet figures from the latest stored reading of every device on a node that
    is not offline; static/js/fleet-totals.js recomputes them from live telemetry."""
    devices = list(device_list().exclude(node__state=NodeState.OFFLINE))
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


def placement_list() -> QuerySet[Placement]:
    return Placement.objects.select_related("version__model", "device__node")


def overview_cards() -> list[dict]:
    devices = Device.objects.aggregate(
        total=Count("pk"),
        gpus=Count("pk", filter=Q(kind="gpu")),
        healthy=Count("pk", filter=Q(health=DeviceHealth.HEALTHY)),
        simulated=Count("pk", filter=Q(simulated=True)),
    )
    nodes = Node.objects.aggregate(total=Count("pk"), online=Count("pk", filter=Q(state=NodeState.ONLINE)))
    placements = Placement.objects.aggregate(
        loaded=Count("pk", filter=Q(state=PlacementState.LOADED)),
        moving=Count("pk", filter=Q(state__in=PLACEMENT_ACTIVE - {PlacementState.LOADED.value})),
    )
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
        {
            "label": "Loaded models",
            "value": placements["loaded"],
            "url": reverse("fleet:placements"),
            "hint": f"{placements['moving']} loading or unloading",
        },
    ]
