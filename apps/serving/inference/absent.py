"""The refusal of a request for a version with no loaded placement to answer it, saying why: it is
loading (try again shortly), it is stuck on devices whose workers are silent, the fleet lost it
(where, and what became of it), or it was never loaded. Read only once a request found nothing
loaded, so the common path never pays for it; `coming` is shared with the liveness checks, which
say where a lost version is being loaded instead."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from apps.core.redis_clients import shared_redis
from apps.core.templatetags.moc import when
from apps.core.workers import queues_silence
from apps.fleet.domain.states import NodeState
from apps.models.models import ModelVersion
from apps.serving import metrics, placing
from apps.serving.domain.errors import Refusal
from apps.serving.domain.states import PLACEMENT_SERVING, PlacementState
from apps.serving.inference.refusals import Refused
from apps.serving.models import Placement


def coming(version: ModelVersion) -> Any:
    """The version's placements that serve, or are on their way to (requested or loading)."""
    return Placement.objects.filter(version=version, state__in=PLACEMENT_SERVING)


def not_loaded(
    version: ModelVersion,
    placement_id: int | None,
    now: float,
    *,
    placement_ids: Collection[int] | None = None,
) -> Refused:
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.NOT_LOADED).inc()
    placing.demand_note(version_id=version.pk, now=now)
    if placement_id is not None:
        return Refused(
            409,
            f"Placement {placement_id} of {version} is not loaded.",
            Refusal.NOT_LOADED,
            field="placement",
        )
    if placement_ids is not None:
        # The caller chose the placements (a deployment's release): none of them is loaded now.
        which = ", ".join(str(pk) for pk in sorted(placement_ids)) or "none"
        return Refused(
            409, f"None of the placements of {version} asked for ({which}) is loaded.", Refusal.NOT_LOADED
        )
    if on_the_way := list(coming(version).select_related("device__node")):
        if (stuck := _stuck(on_the_way, now)) is not None:
            return Refused(503, f"{version} is not loaded: {stuck}", Refusal.NOT_LOADED)
        return Refused(409, f"{version} is loading; try again shortly.", Refusal.NOT_LOADED, retry_after_s=2)
    if (lost := _lost(version)) is not None:
        return Refused(503, f"{version} is not loaded: {lost}", Refusal.NOT_LOADED)
    return Refused(
        409,
        f"{version} is not loaded: load it first (POST /api/v1/placements/ with its id).",
        Refusal.NOT_LOADED,
    )


def _stuck(coming: list[Placement], now: float) -> str | None:
    """Why none of a version's coming placements loads soon: each was asked of a device whose
    worker is silent (lost with its worker, and nothing else could take it). None when one may."""
    client = shared_redis()
    silences = queues_silence({p.device.queue for p in coming}, client)
    if any(silence is None for silence in silences.values()):
        return None
    first = coming[0]
    silence = silences[first.device.queue]
    assert silence is not None
    why = placing.worker_silence(first.device, silence, now=now)
    return (
        f"it is being loaded on {first.device} again, which takes it only once its worker answers "
        f"({why}); or load it on another device (POST /api/v1/placements/ with its id)."
    )


def _lost(version: ModelVersion) -> str | None:
    """Why a version the fleet lost is not loaded: where its last placement was, and what became
    of it. None when its last placement ended otherwise (unloaded, failed) or it had none."""
    last = (
        Placement.objects.filter(version=version)
        .select_related("device__node")
        .order_by("-updated_at", "-pk")
        .first()
    )
    if last is None or last.state != PlacementState.LOST:
        return None
    again = "load it on another node (POST /api/v1/placements/ with its id)."
    node = last.device.node
    if node.state == NodeState.OFFLINE:
        return f"its only placement was on {node.name}, offline since {when(node.last_heartbeat_at)}; {again}"
    error = last.error.removeprefix("Lost: ").rstrip(".") or "its worker lost it"
    return f"its placement on {last.device} was lost ({error}); {again.replace('another node', 'any device')}"
