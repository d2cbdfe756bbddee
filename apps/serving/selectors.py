"""Reads of serving for the pages: placements as the live lists show them, their breakers, a
version's recent request figures and what its Load and Try it offer."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from apps.core.redis_clients import redis_client
from apps.models.domain.states import ValidationState
from apps.models.models import ModelVersion
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.domain.tasks import EMBED, GENERATE, TENSORS, tasks_for
from apps.serving.models import InferenceRecord, Placement
from apps.serving.resilience import Breakers

# A placement that ended this recently still shows in the live lists, so a failure is read where
# it happened instead of vanishing with the next poll.
RECENT_END_S = 900
# Ended placements a live list shows, newest first.
RECENT_END_SHOWN = 5
# A device page's placement history: this many of the latest that ended, the rest one link away.
HISTORY_SHOWN = 10
# Versions a device's Load form offers; the version page loads any other.
LOAD_CHOICES_MAX = 50
# The inference records the version page reads for its median (the newest of the last hour).
FIGURES_ROWS = 500
FIGURES_WINDOW_S = 3600
# What the version page's Try it offers, of the tasks a version answers, in this order.
TRY_TASKS = (GENERATE, EMBED, TENSORS)
# Try it fills an ONNX input with zeros up to this many values; past that the person types them.
TENSOR_PREFILL_MAX = 256


def placement_list() -> QuerySet[Placement]:
    return Placement.objects.select_related("version__model", "device__node")


def _live_rows(now: datetime) -> QuerySet[Placement]:
    since = now - timedelta(seconds=RECENT_END_S)
    return placement_list().filter(Q(state__in=PLACEMENT_ACTIVE) | Q(ended_at__gte=since))


def _live_order(placements: Iterable[Placement]) -> list[Placement]:
    """Active placements oldest first, then the recently ended newest first (a few)."""
    rows = list(placements)
    active = sorted((p for p in rows if p.active), key=lambda p: (p.created_at, p.pk))
    ended = sorted((p for p in rows if not p.active), key=lambda p: (p.ended_at, p.pk), reverse=True)
    return active + ended[:RECENT_END_SHOWN]


def device_placements_live(*, device_ids: Iterable[int], now: datetime) -> dict[int, list[Placement]]:
    """What each device holds or is loading, and what ended on it lately: one query for any
    number of devices, every id present in the answer."""
    ids = list(device_ids)
    by_device: dict[int, list[Placement]] = {pk: [] for pk in ids}
    for placement in _live_rows(now).filter(device_id__in=ids):
        by_device[placement.device_id].append(placement)
    return {pk: _live_order(rows) for pk, rows in by_device.items()}


def device_placements_ended(*, device_id: int, limit: int = HISTORY_SHOWN) -> tuple[list[Placement], int]:
    """The latest `limit` placements that ended on a device, newest first, and how many ended
    there in all: a bounded history, however long the device has served."""
    ended = placement_list().filter(device_id=device_id).exclude(state__in=PLACEMENT_ACTIVE)
    return list(ended.order_by("-ended_at", "-pk")[:limit]), ended.count()


def version_placements_live(*, version_id: int, now: datetime) -> list[Placement]:
    """Where a version is loaded or loading, and where it ended lately."""
    return _live_order(_live_rows(now).filter(version_id=version_id))


def version_load_choices(*, limit: int = LOAD_CHOICES_MAX) -> list[ModelVersion]:
    """Versions a device's Load form offers: valid, not archived, of a kind MOC serves, by model
    name and newest first; at most `limit`."""
    rows = (
        ModelVersion.objects.select_related("model")
        .filter(archived=False, model__archived=False, validation_state=ValidationState.VALID)
        .order_by("model__name", "-number")
    )
    chosen: list[ModelVersion] = []
    for version in rows.iterator(chunk_size=limit * 2):
        if version.kind == "adapter" or tasks_for(version.kind, version.format):
            chosen.append(version)
            if len(chosen) == limit:
                break
    return chosen


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A placement's circuit breaker as a page shows it; state "unknown" when Redis did not answer."""

    state: str
    failures: int = 0
    last_error: str = ""

    @property
    def label(self) -> str:
        return self.state.replace("_", "-")

    @property
    def tone(self) -> str:
        return {"closed": "ok", "half_open": "warn", "open": "bad"}.get(self.state, "")


UNKNOWN_BREAKER = BreakerView(state="unknown")


def breaker_views(*, placement_ids: Iterable[int]) -> dict[int, BreakerView]:
    """Each placement's breaker, in one Redis round trip (all unknown when Redis is away)."""
    ids = list(placement_ids)
    if not ids:
        return {}
    try:
        breakers = Breakers(redis_client()).get(ids)
    except redis.RedisError:
        return dict.fromkeys(ids, UNKNOWN_BREAKER)
    return {
        pk: BreakerView(state=b.state.value, failures=b.failures, last_error=b.last_error)
        for pk, b in breakers.items()
    }


@dataclass(frozen=True, slots=True)
class ServingFigures:
    """A version's requests over the last hour, read from at most its newest FIGURES_ROWS records."""

    requests: int
    failed: int
    p50_compute_ms: float | None  # of the answered ones
    capped: bool  # there were more requests than the rows read


def serving_figures(*, version_id: int, now: datetime) -> ServingFigures:
    rows = list(
        InferenceRecord.objects.filter(
            version_id=version_id, at__gte=now - timedelta(seconds=FIGURES_WINDOW_S)
        )
        .order_by("-at")
        .values_list("outcome", "compute_ms")[: FIGURES_ROWS + 1]
    )
    capped = len(rows) > FIGURES_ROWS
    rows = rows[:FIGURES_ROWS]
    compute = [ms for outcome, ms in rows if outcome == "ok" and ms is not None]
    return ServingFigures(
        requests=len(rows),
        failed=sum(outcome != "ok" for outcome, _ in rows),
        p50_compute_ms=statistics.median(compute) if compute else None,
        capped=capped,
    )


@dataclass(frozen=True, slots=True)
class TensorInput:
    """One input of an ONNX graph as Try it asks for it: the graph's declared shape, and a shape
    and values to start from (symbolic or unknown dimensions taken as 1)."""

    name: str
    dtype: str
    declared: str  # e.g. "[batch, 8]"
    shape: str  # e.g. "1, 8"
    values: str  # zeros, when there are few enough to type over


def tensor_inputs(metadata: dict[str, Any]) -> list[TensorInput]:
    """The graph inputs an ONNX version's metadata names (apps.models.formats.onnx), for Try it."""
    inputs = []
    for spec in metadata.get("inputs") or []:
        if not isinstance(spec, dict) or not spec.get("name"):
            continue
        dims = spec.get("shape") if isinstance(spec.get("shape"), list) else []
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        count = math.prod(shape)
        inputs.append(
            TensorInput(
                name=str(spec["name"]),
                dtype=str(spec.get("dtype") or "?"),
                declared="[" + ", ".join("?" if d is None else str(d) for d in dims) + "]",
                shape=", ".join(map(str, shape)),
                values=", ".join(["0"] * count) if count <= TENSOR_PREFILL_MAX else "",
            )
        )
    return inputs


@dataclass(frozen=True, slots=True)
class VersionServing:
    """The version page's Serving section: where it is placed (each active placement given its
    `.breaker`), its recent figures, the requests Try it makes (of those the version answers) and,
    for a graph, the inputs its tensors form asks for."""

    placements: list[Placement]
    figures: ServingFigures
    tasks: frozenset[str]
    try_tasks: tuple[str, ...]
    inputs: list[TensorInput]
    active: bool  # loaded or on its way: Try it is worth offering


def version_serving(*, version: ModelVersion, now: datetime) -> VersionServing:
    placements = version_placements_live(version_id=version.pk, now=now)
    breakers = breaker_views(placement_ids=[p.pk for p in placements if p.active])
    for placement in placements:
        placement.breaker = breakers.get(placement.pk)
    tasks = tasks_for(version.kind, version.format)
    return VersionServing(
        placements=placements,
        figures=serving_figures(version_id=version.pk, now=now),
        tasks=tasks,
        try_tasks=tuple(t for t in TRY_TASKS if t in tasks),
        inputs=tensor_inputs(version.metadata) if TENSORS in tasks else [],
        active=any(p.active and p.state != PlacementState.UNLOADING for p in placements),
    )


def overview_cards() -> list[dict]:
    placements = Placement.objects.aggregate(
        loaded=Count("pk", filter=Q(state=PlacementState.LOADED)),
        moving=Count("pk", filter=Q(state__in=PLACEMENT_ACTIVE - {PlacementState.LOADED.value})),
    )
    return [
        {
            "label": "Loaded models",
            "value": placements["loaded"],
            "url": reverse("serving:placements"),
            "hint": f"{placements['moving']} loading or unloading",
        },
    ]
