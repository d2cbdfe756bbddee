"""Preloading: versions marked for it when a worker starts, and (optionally) by recent demand."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, Q

from apps.core.redis_clients import redis_client
from apps.fleet.models import Device
from apps.models.models import ModelVersion
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.models import InferenceRecord, Placement, ServingProfile
from apps.serving.placing.load import PlacementRefused, placement_load

log = logging.getLogger(__name__)


def preload(*, device: Device) -> list[Placement]:
    """Request the versions marked for preloading, as `device`'s worker starts: those marked for
    its node onto it, the others wherever they fit if they are loaded nowhere yet. Never evicts."""
    placed = []
    profiles = ServingProfile.objects.filter(preload=True, version__archived=False).select_related("version")
    for profile in profiles.filter(Q(preload_node="") | Q(preload_node=device.node.name)):
        target = device if profile.preload_node else None
        try:
            placed.append(placement_load(version=profile.version, device=target, evict=False))
        except (PlacementRefused, ValidationError) as exc:
            log.warning("preloading %s: %s", profile.version, exc)
    return placed


DEMAND_KEY = "moc:serving:demand"


_DEMAND_WINDOW_S = 3600


def demand_note(*, version_id: int, now: float) -> None:
    """Count a request for a version that was not loaded: preloading by demand reads these."""
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            pipe.zadd(DEMAND_KEY, {f"{version_id}:{now:.6f}": now})
            pipe.zremrangebyscore(DEMAND_KEY, 0, now - _DEMAND_WINDOW_S)
            pipe.execute()
    except redis.RedisError as exc:
        log.debug("demand not noted: %s", exc)


def demand(*, now: float) -> dict[int, int]:
    """Requests per version in the last hour: answered ones (InferenceRecord) and ones refused as
    not loaded (noted in Redis)."""
    since = datetime.fromtimestamp(now - _DEMAND_WINDOW_S, tz=UTC)
    counts: dict[int, int] = dict(
        InferenceRecord.objects.filter(at__gte=since).values_list("version_id").annotate(n=Count("pk"))
    )
    try:
        refused = redis_client().zrangebyscore(DEMAND_KEY, now - _DEMAND_WINDOW_S, "+inf")
    except redis.RedisError:
        refused = []
    for member in refused:
        version_id = int(member.split(b":", 1)[0])
        counts[version_id] = counts.get(version_id, 0) + 1
    return counts


def preload_by_demand(*, now: float | None = None) -> list[Placement]:
    """When MOC_PRELOAD_BY_DEMAND is on: load the five most requested versions of the last hour
    that are loaded nowhere, wherever there is free room (never evicting anything for them)."""
    if not settings.MOC_PRELOAD_BY_DEMAND:
        return []
    now = time.time() if now is None else now
    active = set(Placement.objects.filter(state__in=PLACEMENT_ACTIVE).values_list("version_id", flat=True))
    wanted = [
        v for v, _ in sorted(demand(now=now).items(), key=lambda kv: (-kv[1], kv[0])) if v not in active
    ]
    placed = []
    for version in ModelVersion.objects.filter(pk__in=wanted[:5], archived=False):
        try:
            placed.append(placement_load(version=version, evict=False, now=now))
        except (PlacementRefused, ValidationError) as exc:
            log.info("preloading %s by demand: %s", version, exc)
    return placed
