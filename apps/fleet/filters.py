"""FilterSets shared by the fleet's API and pages."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from apps.core.filters import FilterSet
from apps.fleet.models import Device, Node, TelemetrySample


class NodeFilter(FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Name or host")

    class Meta:
        model = Node
        fields = ["q", "state", "backend"]

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(hostname__icontains=value))


class DeviceFilter(FilterSet):
    node_name = django_filters.CharFilter(field_name="node__name", label="Node name")
    retired = django_filters.BooleanFilter(
        field_name="retired_at", lookup_expr="isnull", exclude=True, label="Retired"
    )

    class Meta:
        model = Device
        fields = ["node", "node_name", "kind", "health", "simulated", "retired"]


class TelemetrySampleFilter(FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte", label="From (inclusive)")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt", label="Until (exclusive)")

    class Meta:
        model = TelemetrySample
        fields = ["device", "resolution_s", "since", "until"]
