"""Reads of the model registry, for the API, the pages and the Overview."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Prefetch, Q, QuerySet
from django.urls import reverse

from apps.models.domain.states import SCAN_ACTIVE, ValidationState
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel, ScanRun


def version_unusable(version: ModelVersion) -> str | None:
    """Why `version` cannot be loaded (failed validation, archived), or None: the one wording
    every load refuses with (the scheduler's checks and the placement service). Releases ask more
    of a version, a passed validation (apps.deployments.services)."""
    if version.validation_state == ValidationState.INVALID:
        why = version.validation_error or "see its validation report"
        return f"{version} failed validation and cannot be loaded: {why}"
    if version.archived:
        return f"{version} is archived."
    return None


def adapter_bases(adapters: Iterable[ModelVersion]) -> dict[int, ModelVersion]:
    """The registered version each adapter's adapter_config.json names as its base, by adapter id.

    peft records the base by the path it was loaded from (base_model_name_or_path), so the base is
    the newest unarchived version at that path; an adapter naming a hub id or a path nothing is
    registered at is left out. The one resolution of a named base: discovery records it as the
    adapter's parent, and loading an adapter falls back on it while no parent is recorded.
    """
    named = {adapter.pk: path for adapter in adapters if (path := adapter_named_base(adapter))}
    if not named:
        return {}
    newest: dict[str, ModelVersion] = {}
    bases = ModelVersion.objects.filter(path__in=set(named.values()), archived=False).select_related("model")
    for version in bases.order_by("path", "-number", "-pk"):
        newest.setdefault(version.path, version)
    return {pk: newest[path] for pk, path in named.items() if path in newest and newest[path].pk != pk}


def adapter_named_base(adapter: ModelVersion) -> str:
    """The base path (or hub id) `adapter`'s adapter_config.json names, less a trailing slash; "" if none."""
    config = (adapter.metadata or {}).get("adapter")
    path = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return path.rstrip("/") if isinstance(path, str) else ""


def adapter_base(adapter: ModelVersion) -> ModelVersion | None:
    """The registered version `adapter` names as its base, or None (see adapter_bases)."""
    return adapter_bases([adapter]).get(adapter.pk)


def registered_model_list() -> QuerySet[RegisteredModel]:
    versions = ModelVersion.objects.order_by("-number")
    aliases = ModelAlias.objects.select_related("version").order_by("name")
    return (
        RegisteredModel.objects.select_related("owner")
        .prefetch_related(Prefetch("versions", queryset=versions), Prefetch("aliases", queryset=aliases))
        .annotate(version_count=Count("versions", distinct=True))
        .order_by("name")
    )


def latest_versions() -> QuerySet[ModelVersion]:
    """Versions newest first, archived ones left out: the first of a model's is its latest."""
    return ModelVersion.objects.filter(archived=False).order_by("-number")


def model_rows() -> QuerySet[RegisteredModel]:
    """The models page's rows, each with `latest` (its latest version, in a list of at most
    one) and its aliases, in a fixed number of queries however many versions there are."""
    aliases = ModelAlias.objects.select_related("version").order_by("name")
    return (
        RegisteredModel.objects.select_related("owner")
        .prefetch_related(
            Prefetch("versions", queryset=latest_versions()[:1], to_attr="latest"),
            Prefetch("aliases", queryset=aliases),
        )
        .annotate(version_count=Count("versions", distinct=True))
        .order_by("name")
    )


def model_page() -> QuerySet[RegisteredModel]:
    aliases = ModelAlias.objects.select_related("version").order_by("name")
    return RegisteredModel.objects.select_related("owner").prefetch_related(
        Prefetch("aliases", queryset=aliases)
    )


def model_lineage(*, model: RegisteredModel) -> dict[str, list[ModelVersion]]:
    """Lineage that crosses to other models: the versions this model's versions were derived
    from (`parents`), and other models' versions derived from this one's (`children`)."""
    parents = (
        ModelVersion.objects.filter(children__model=model)
        .exclude(model=model)
        .select_related("model")
        .distinct()
        .order_by("model__name", "number")
    )
    children = (
        ModelVersion.objects.filter(parent__model=model)
        .exclude(model=model)
        .select_related("model", "parent")
        .order_by("model__name", "number")
    )
    return {"parents": list(parents), "children": list(children)}


def version_kinds() -> list[str]:
    """The kinds (causal-lm, adapter, ...) that some version has, for the filters' choices."""
    return list(
        ModelVersion.objects.exclude(kind="").values_list("kind", flat=True).distinct().order_by("kind")
    )


def scan_list() -> QuerySet[ScanRun]:
    return ScanRun.objects.select_related("requested_by").order_by("-created_at", "-id")


def scan_active() -> ScanRun | None:
    """The scan queued or running now, if any (at most one runs at a time)."""
    return scan_list().filter(state__in=SCAN_ACTIVE).first()


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
