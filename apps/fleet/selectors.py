"""Reads of the fleet, for the API, the pages and the Overview."""

from __future__ import annotations

from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse

from apps.fleet.domain.kinds import Resolution
from apps.fleet.domain.states import PLACEMENT_ACTIVE, DeviceHealth, NodeState, PlacementState
from apps.fleet.models import Device, Node, Placement, TelemetrySample


def device_list() -> QuerySet[Device]:
    """Devices with the memory their active placements reserve and their latest raw reading."""
    latest = TelemetrySample.objects.filter(device=OuterRef("pk"), resolution_s=Resolution.RAW).order_by(
        "-at"
    )
    return (
        Device.objects.select_related("node")
        .annotate(
            reserved_bytes=Coalesce(
                Sum("placements__reserved_bytes", filter=Q(placements__state__in=PLACEMENT_ACTIVE)), 0
            ),
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
