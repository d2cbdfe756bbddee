from __future__ import annotations

from typing import Any

from django.views.generic import DetailView

from apps.core.pages import FilteredListView
from apps.fleet import selectors
from apps.fleet.domain.states import PLACEMENT_ACTIVE
from apps.fleet.filters import NodeFilter, PlacementFilter
from apps.fleet.models import Device, Node


class DeviceListView(FilteredListView):
    """The GPUs page: every node with its devices."""

    queryset = selectors.node_list()
    filterset_class = NodeFilter
    template_name = "fleet/devices.html"
    section = "gpus"
    paginate_by = 25


class NodeDetailView(DetailView):
    queryset = selectors.node_list()
    template_name = "fleet/node_detail.html"
    context_object_name = "node"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        node: Node = self.object
        placements = selectors.placement_list().filter(device__node=node, state__in=PLACEMENT_ACTIVE)
        return super().get_context_data(section="gpus", placements=placements, **kwargs)


class DeviceDetailView(DetailView):
    queryset = selectors.device_list()
    template_name = "fleet/device_detail.html"
    context_object_name = "device"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        device: Device = self.object
        return super().get_context_data(
            section="gpus",
            placements=selectors.placement_list().filter(device=device)[:50],
            samples=selectors.telemetry_sample_list().filter(device=device)[:20],
            **kwargs,
        )


class PlacementListView(FilteredListView):
    queryset = selectors.placement_list()
    filterset_class = PlacementFilter
    template_name = "fleet/placement_list.html"
    section = "gpus"
