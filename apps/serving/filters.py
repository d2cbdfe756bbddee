"""FilterSets shared by serving's API and pages."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from apps.core.filters import FilterSet
from apps.fleet.models import Device, Node
from apps.models.models import ModelVersion
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.models import Placement


class PlacementFilter(FilterSet):
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
