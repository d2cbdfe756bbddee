from __future__ import annotations

from rest_framework import viewsets

from apps.fleet import selectors
from apps.fleet.api import serializers as s
from apps.fleet.filters import DeviceFilter, NodeFilter, PlacementFilter, TelemetrySampleFilter


class NodeViewSet(viewsets.ReadOnlyModelViewSet):
    """Machines running MOC workers, with their devices. Workers register them."""

    queryset = selectors.node_list()
    serializer_class = s.NodeSerializer
    filterset_class = NodeFilter
    search_fields = ["name", "hostname"]
    ordering_fields = ["name", "last_heartbeat_at", "created_at"]


class DeviceViewSet(viewsets.ReadOnlyModelViewSet):
    """GPUs (or a node's CPU) with health, memory and their latest reading.
    `simulated` is true for devices with no real hardware behind them."""

    queryset = selectors.device_list()
    serializer_class = s.DeviceSerializer
    filterset_class = DeviceFilter
    search_fields = ["name", "uuid", "node__name"]
    ordering_fields = ["node__name", "index", "memory_total_bytes", "health"]


class TelemetrySampleViewSet(viewsets.ReadOnlyModelViewSet):
    """Device readings; filter by `device` and a time range (`since` inclusive, `until` exclusive)."""

    queryset = selectors.telemetry_sample_list()
    serializer_class = s.TelemetrySampleSerializer
    filterset_class = TelemetrySampleFilter
    ordering_fields = ["at"]


class PlacementViewSet(viewsets.ReadOnlyModelViewSet):
    """Which model version is loaded (or loading, or was) on which device."""

    queryset = selectors.placement_list()
    serializer_class = s.PlacementSerializer
    filterset_class = PlacementFilter
    search_fields = ["version__model__name", "device__name", "device__node__name"]
    ordering_fields = ["created_at", "updated_at", "last_used_at", "reserved_bytes"]
