"""The fleet's pages: GPUs, nodes and devices, live. What devices hold and the buttons that load,
unload and pin are serving's sections on these pages (apps.core.sections: "fleet.devices",
"fleet.device", "fleet.node")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.generic import DetailView

from apps.core.pages import FilteredListView, ids_param
from apps.fleet import selectors
from apps.fleet.filters import NodeFilter
from apps.fleet.models import Device, Node

# The pages re-read what MOC holds on their devices this often (seconds): static/js/gpus.js.
HOLDINGS_POLL_S = 3


def _live_data(devices: Iterable[Device], *, everything: bool) -> dict[str, Any]:
    """Give each device its memory bar and return what static/js/gpus.js redraws them from.

    `everything` says the page shows every device MOC knows, so the script subscribes to all
    of them and a device it has never heard of means one registered since the page loaded.
    """
    data = []
    for device in selectors.with_holdings(devices):
        device.memory = selectors.memory_segments(device=device)
        data.append(selectors.device_panel_data(device=device))
    return {
        "all": everything,
        "devices": data,
        "holdings_url": reverse("fleet:devices_live"),
        "poll_s": HOLDINGS_POLL_S,
    }


class DeviceListView(FilteredListView):
    """The GPUs page: every node with its devices, live."""

    model = Node
    filterset_class = NodeFilter
    template_name = "fleet/devices.html"
    section = "gpus"
    paginate_by = 25

    def get_queryset(self) -> QuerySet[Node]:
        # Built per request: what devices hold comes from the provider registered at start-up.
        self.queryset = selectors.node_panel_list()
        return super().get_queryset()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        devices = [device for node in context["object_list"] for device in node.offered_devices]
        everything = not context["filtered"] and not context["is_paginated"]
        context["live_data"] = _live_data(devices, everything=everything)
        context["page_devices"] = devices
        return context


class NodeDetailView(DetailView):
    template_name = "fleet/node_detail.html"
    context_object_name = "node"

    def get_queryset(self) -> QuerySet[Node]:
        return selectors.node_panel_list()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        selectors.with_workers(self.object.offered_devices)
        return super().get_context_data(
            section="gpus", live_data=_live_data(self.object.offered_devices, everything=False), **kwargs
        )


class DeviceDetailView(DetailView):
    template_name = "fleet/device_detail.html"
    context_object_name = "device"

    def get_queryset(self) -> QuerySet[Device]:
        return selectors.device_panel_list()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        device: Device = self.object
        if device.retired:  # no live figures: nothing reads it any more
            return super().get_context_data(section="gpus", **kwargs)
        selectors.with_workers([device])
        return super().get_context_data(
            section="gpus",
            live_devices=[device],
            live_data=_live_data([device], everything=False),
            **kwargs,
        )


@require_GET
def devices_live(request: HttpRequest) -> JsonResponse:
    """What MOC holds on the devices a page shows (`?device=1&device=2`), for static/js/gpus.js to
    keep their reserved memory and bars current between reloads; retired devices are left out."""
    ids = ids_param(request, "device")
    devices = selectors.with_holdings(selectors.device_list().filter(pk__in=ids, retired_at=None))
    return JsonResponse({"devices": [selectors.device_panel_data(device=d) for d in devices]})
