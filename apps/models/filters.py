"""FilterSets shared by the registry's API and pages."""

from __future__ import annotations

import json

import django_filters
from django.db.models import OuterRef, Q, QuerySet, Subquery

from apps.core.filters import FilterSet
from apps.models import selectors
from apps.models.domain.formats import FILE_FORMAT_CHOICES, MODEL_FORMAT_CHOICES
from apps.models.domain.states import SCAN, VALIDATION
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel, ScanRun


def _kind_choices() -> list[tuple[str, str]]:
    # Kinds are whatever the readers recognised, so the choices are the ones in use.
    return [(kind, kind) for kind in selectors.version_kinds()]


class RegisteredModelFilter(FilterSet):
    """Models by name, description or tag, and by what their latest version is.

    "Latest" is the highest-numbered version that is not archived: the one the list
    shows, so a filter never keeps a row whose visible badge says otherwise.
    """

    q = django_filters.CharFilter(method="filter_q", label="Search")
    tag = django_filters.CharFilter(method="filter_tag", label="Tag")
    model_format = django_filters.ChoiceFilter(
        choices=MODEL_FORMAT_CHOICES, method="filter_latest", label="Format"
    )
    validation_state = django_filters.ChoiceFilter(
        choices=VALIDATION.choices, method="filter_latest", label="Validation"
    )
    kind = django_filters.ChoiceFilter(choices=_kind_choices, method="filter_latest", label="Kind")
    archived = django_filters.BooleanFilter()

    class Meta:
        model = RegisteredModel
        fields = ["q", "model_format", "validation_state", "kind", "tag", "archived", "owner"]

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        return queryset.filter(
            Q(name__icontains=value) | Q(description__icontains=value) | Q(tags__icontains=value.lower())
        )

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # Tags are a JSON list of lower-case slugs; matching the quoted JSON string finds
        # an exact tag on every database (SQLite has no JSON "contains").
        return queryset.filter(tags__icontains=json.dumps(value.strip().lower()))

    def filter_latest(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        field = "format" if name == "model_format" else name
        latest = selectors.latest_versions().filter(model=OuterRef("pk")).values(field)[:1]
        return queryset.annotate(**{f"latest_{field}": Subquery(latest)}).filter(**{f"latest_{field}": value})


# `?format=` is DRF's renderer override, so the format filters carry their table's name.


class ModelVersionFilter(FilterSet):
    model_name = django_filters.CharFilter(field_name="model__name", lookup_expr="iexact", label="Model name")
    model_format = django_filters.ChoiceFilter(
        field_name="format", choices=MODEL_FORMAT_CHOICES, label="Format"
    )

    class Meta:
        model = ModelVersion
        fields = ["model", "model_name", "model_format", "validation_state", "kind", "archived", "parent"]


class ModelFileFilter(FilterSet):
    file_format = django_filters.ChoiceFilter(
        field_name="format", choices=FILE_FORMAT_CHOICES, label="Format"
    )

    class Meta:
        model = ModelFile
        fields = ["version", "file_format"]


class ModelAliasFilter(FilterSet):
    class Meta:
        model = ModelAlias
        fields = ["model", "name", "version"]


class ScanRunFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=SCAN.choices)

    class Meta:
        model = ScanRun
        fields = ["state", "requested_by"]
