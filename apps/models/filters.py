"""FilterSets shared by the registry's API and pages."""

from __future__ import annotations

import json

import django_filters
from django.db.models import Q, QuerySet

from apps.models.domain.formats import FILE_FORMAT_CHOICES, MODEL_FORMAT_CHOICES
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel


class RegisteredModelFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Name or tag")
    tag = django_filters.CharFilter(method="filter_tag", label="Tag")
    archived = django_filters.BooleanFilter()

    class Meta:
        model = RegisteredModel
        fields = ["q", "tag", "archived", "owner"]

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(tags__icontains=value.strip().lower()))

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # Tags are a JSON list of lower-case slugs; matching the quoted JSON string finds
        # an exact tag on every database (SQLite has no JSON "contains").
        return queryset.filter(tags__icontains=json.dumps(value.strip().lower()))


# `?format=` is DRF's renderer override, so the format filters carry their table's name.


class ModelVersionFilter(django_filters.FilterSet):
    model_name = django_filters.CharFilter(field_name="model__name", lookup_expr="iexact", label="Model name")
    model_format = django_filters.ChoiceFilter(
        field_name="format", choices=MODEL_FORMAT_CHOICES, label="Format"
    )

    class Meta:
        model = ModelVersion
        fields = ["model", "model_name", "model_format", "validation_state", "archived", "parent"]


class ModelFileFilter(django_filters.FilterSet):
    file_format = django_filters.ChoiceFilter(
        field_name="format", choices=FILE_FORMAT_CHOICES, label="Format"
    )

    class Meta:
        model = ModelFile
        fields = ["version", "file_format"]


class ModelAliasFilter(django_filters.FilterSet):
    class Meta:
        model = ModelAlias
        fields = ["model", "name", "version"]
