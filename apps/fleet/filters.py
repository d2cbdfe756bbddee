"""FilterSets shared by the fleet's API and pages."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from apps.fleet.domain.states import PLACEMENT_ACTIVE
from apps.fleet.models import Device, Node, Placement, TelemetrySample
from apps.models.models import ModelVersion


class NodeFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Name or host")

    class Meta:
        model = Node
        fields = ["q", "state", "backend"]

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(hostname__icontains=value))


class DeviceFilter(django_filters.FilterSet):
    node_name = django_filters.CharFilter(field_name="node__name", label="Node name")

    class Meta:
        model = Device
        fields = ["node", "node_name", "kind", "health", "simulated"]


class TelemetrySampleFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte", label="From (inclusive)")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt", label="Until (exclusive)")

    class Meta:
        model = TelemetrySample
        fields = ["device", "resolution_s", "since", "until"]


class PlacementFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(method="filter_active", label="Active")
    node = django_filters.ModelChoiceFilter(
        field_name="device__node", queryset=Node.objects.all(), label="Node"
    )
    model = django_filters.NumberFilter(field_name="version__model", label="Registered model id")
    # The choice lists print each device and version with its node or model: load those in
    # the same query rather than one query per option.
    device = django_filters.ModelChoiceFilter(queryset=Device.objects.select_related("node"))
    version = django_filters.ModelChoiceFilter(queryset=ModelVersion.objects.select_related("model"))

    class Meta:
        model = Placement
        fields = ["state", "active", "device", "node", "version", "model", "pinned"]

    def filter_active(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        lookup = Q(state__in=PLACEMENT_ACTIVE)
        return queryset.filter(lookup if value else ~lookup)
