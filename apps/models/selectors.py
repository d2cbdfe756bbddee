"""Reads of the model registry, for the API, the pages and the Overview."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet
from django.urls import reverse

from apps.models.domain.states import ValidationState
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel


def registered_model_list() -> QuerySet[RegisteredModel]:
    versions = ModelVersion.objects.order_by("-number")
    aliases = ModelAlias.objects.select_related("version").order_by("name")
    return (
        RegisteredModel.objects.select_related("owner")
        .prefetch_related(Prefetch("versions", queryset=versions), Prefetch("aliases", queryset=aliases))
        .annotate(version_count=Count("versions", distinct=True))
        .order_by("name")
    )


def model_version_list() -> QuerySet[ModelVersion]:
    return (
        ModelVersion.objects.select_related("model", "parent__model", "created_by")
        .annotate(file_count=Count("files", distinct=True))
        .order_by("model__name", "-number")
    )


def model_file_list() -> QuerySet[ModelFile]:
    return ModelFile.objects.select_related("version__model")


def model_alias_list() -> QuerySet[ModelAlias]:
    return ModelAlias.objects.select_related("model", "version")


def overview_cards() -> list[dict]:
    counts = RegisteredModel.objects.aggregate(
        active=Count("pk", filter=Q(archived=False)), archived=Count("pk", filter=Q(archived=True))
    )
    by_state = dict(
        ModelVersion.objects.filter(archived=False)
        .values_list("validation_state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    hint = f"{counts['archived']} archived" if counts["archived"] else "none archived"
    versions = sum(by_state.values())
    version_hint = " · ".join(
        f"{by_state[s.value]} {s.value}" for s in ValidationState if by_state.get(s.value)
    )
    return [
        {"label": "Models", "value": counts["active"], "url": reverse("models:list"), "hint": hint},
        {
            "label": "Model versions",
            "value": versions,
            "url": reverse("models:list"),
            "hint": version_hint or "none registered yet",
        },
    ]
