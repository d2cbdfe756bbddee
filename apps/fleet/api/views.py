from __future__ import annotations

from typing import Any

import redis
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from apps.core.redis_clients import redis_client
from apps.fleet import history, selectors, telemetry
from apps.fleet.api import serializers as s
from apps.fleet.filters import DeviceFilter, NodeFilter, TelemetrySampleFilter
from apps.fleet.models import Device, Node


class NodeViewSet(viewsets.ReadOnlyModelViewSet):
    """Machines running MOC workers, with their devices. Workers register them."""

    queryset = Node.objects.all()  # the model; get_queryset() reads it per request
    serializer_class = s.NodeSerializer
    filterset_class = NodeFilter
    search_fields = ["name", "hostname"]
    ordering_fields = ["name", "last_heartbeat_at", "created_at"]

    def get_queryset(self) -> QuerySet[Node]:
        return selectors.node_list()

    def get_serializer(self, *args: Any, **kwargs: Any) -> BaseSerializer:
        """The devices of the nodes about to be shown, given their workers in one Redis round trip."""
        if args and args[0] is not None:
            nodes = args[0] if kwargs.get("many") else [args[0]]
            selectors.with_workers(device for node in nodes for device in node.devices.all())
        return super().get_serializer(*args, **kwargs)


class DeviceViewSet(viewsets.ReadOnlyModelViewSet):
    """GPUs (or a node's CPU) with health, memory and their latest reading.
    `simulated` is true for devices with no real hardware behind them."""

    queryset = Device.objects.all()  # the model; get_queryset() reads it per request
    serializer_class = s.DeviceSerializer
    filterset_class = DeviceFilter
    search_fields = ["name", "uuid", "node__name"]
    ordering_fields = ["node__name", "index", "memory_total_bytes", "health"]

    def get_queryset(self) -> QuerySet[Device]:
        # Built per request: what devices hold comes from the provider registered at start-up.
        return selectors.device_list()

    def get_serializer(self, *args: Any, **kwargs: Any) -> BaseSerializer:
        """The devices about to be shown, given their workers in one Redis round trip."""
        if args and args[0] is not None:
            selectors.with_workers(args[0] if kwargs.get("many") else [args[0]])
        return super().get_serializer(*args, **kwargs)

    @extend_schema(parameters=[s.HistoryQuery], responses=s.HistorySerializer)
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str | None = None) -> Response:
        """Stored readings of this device over a range, averaged into buckets that fit it
        (10 s for the last hour, up to 30 min for a week; at most about 600 points)."""
        query = s.HistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = history.device_history(device=self.get_object(), **query.validated_data)
        return Response(s.HistorySerializer(data).data)


class TelemetrySampleViewSet(viewsets.ReadOnlyModelViewSet):
    """Device readings; filter by `device` and a time range (`since` inclusive, `until` exclusive)."""

    queryset = selectors.telemetry_sample_list()
    serializer_class = s.TelemetrySampleSerializer
    filterset_class = TelemetrySampleFilter
    ordering_fields = ["at"]


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"


class TelemetrySnapshotView(APIView):
    """Every node's latest telemetry message: what /ws/telemetry/ clients read on connect
    and after a gap in `seq`. Nodes that went offline are absent."""

    @extend_schema(
        responses=s.TelemetrySnapshotSerializer,
        parameters=[OpenApiParameter("devices", str, description="Comma-separated device ids; default all")],
    )
    def get(self, request: Request) -> Response:
        try:
            nodes = telemetry.latest(redis_client())
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Live telemetry is unavailable: Redis said {exc}") from exc
        wanted = request.query_params.get("devices")
        if wanted:
            try:
                ids = {int(part) for part in wanted.split(",") if part.strip()}
            except ValueError:
                raise ValidationError({"devices": "Comma-separated device ids, e.g. 3,7."}) from None
            nodes = [
                {**node, "devices": kept}
                for node in nodes
                if (kept := [d for d in node["devices"] if d.get("id") in ids])
            ]
        return Response(s.TelemetrySnapshotSerializer({"nodes": nodes}).data)
