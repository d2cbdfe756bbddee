"""Where a deployment's requests go, as the data plane keeps it in process: the deployment's live
split (stable, the canary and its share, and the fallback after a rollback), each side's version,
limits and loaded placements, read by the same rules as the REST API's path (apps.deployments.traffic)
in a few queries on a miss, then cached until invalidation.py hears of a change or
MOC_DATAPLANE_CACHE_S passes, whichever comes first.

A name no deployment may have (domain.naming) is unknown at once: no query, no cache entry, so
made-up `model` strings cost nothing and hold no memory. Misses are read once at a time per name in
a process: concurrent requests for a name not cached (as after a change clears the cache) share
the read in flight rather than each running it.

A Route is plain frozen data: the request path reads it without touching the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import F

from apps.deployments import traffic
from apps.deployments.dataplane import invalidation
from apps.deployments.domain.naming import name_problem
from apps.deployments.domain.split import split_from
from apps.deployments.domain.states import DeploymentState
from apps.deployments.models import Deployment, Release
from apps.deployments.wake import ON_ITS_WAY
from apps.serving.inference import Limits
from apps.serving.inference.aio import Target
from apps.serving.models import Placement

# Names looked up and not found are cached too (a client retrying a wrong name costs no query);
# past this many entries the cache starts again, so made-up names cannot grow it without bound.
_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Side:
    """One release taking traffic, with what a request to it needs."""

    release_id: int
    version_id: int
    version_label: str  # "model vN"
    kind: str
    format: str
    limits: Limits
    targets: tuple[Target, ...]  # its LOADED placements on devices that may serve
    loading: bool  # a replica is on its way


@dataclass(frozen=True, slots=True)
class Route:
    deployment_id: int
    name: str
    state: str
    created: int  # Unix seconds
    owned_by: str  # its owner's username, or "moc"
    max_model_len: int | None  # the stable version's context length, where its metadata gives it
    wake_timeout_s: int
    stable: Side | None
    canary: Side | None
    canary_percent: int
    fallback: Side | None  # a release rolled back from stable, while it alone has loaded replicas


_by_name: dict[str, tuple[float, Route | None]] = {}  # name -> (expires, monotonic), route
_listed: tuple[float, list[Route]] | None = None
_generation = 0  # bumped by clear(): a read begun before it must not fill the cache
# The read in flight per name (None: the listing), shared by the misses that come meanwhile.
_reads: dict[str | None, asyncio.Task[list[Route]]] = {}


def clear() -> None:
    """Forget every cached route (a deployment, release or placement changed)."""
    global _generation, _listed
    _generation += 1
    _by_name.clear()
    _listed = None


invalidation.on_change(invalidation.ROUTES, clear)


async def route(name: str, *, fresh: bool = False) -> Route | None:
    """The deployment called `name` (None: there is none); `fresh` reads it from the database."""
    if name_problem(name) is not None:
        return None
    hit = _by_name.get(name)
    if hit is not None and not fresh and hit[0] > time.monotonic():
        return hit[1]
    found = await _shared(name, fresh)
    return found[0] if found else None


async def routes() -> list[Route]:
    """Every deployment not retired, by name (/v1/models)."""
    if _listed is not None and _listed[0] > time.monotonic():
        return _listed[1]
    return await _shared(None, False)


async def _shared(name: str | None, fresh: bool) -> list[Route]:
    """_read(name), cached, as the read in flight for `name` returns it, else a read of its own; a
    `fresh` read never joins one begun before it. A caller that goes away (cancelled) leaves the
    read going for the others."""
    loop = asyncio.get_running_loop()
    task = None if fresh else _reads.get(name)
    if task is None or task.done() or task.get_loop() is not loop:
        task = loop.create_task(_fill(name))
        _reads[name] = task
        task.add_done_callback(lambda done: _forget(name, done))
    return await asyncio.shield(task)


def _forget(name: str | None, task: asyncio.Task[list[Route]]) -> None:
    if _reads.get(name) is task:
        del _reads[name]
    if not task.cancelled():
        task.exception()  # retrieved: a read nobody awaits any more is not logged as lost


async def _fill(name: str | None) -> list[Route]:
    """Read the routes of `name` (None: the listing) and cache them, unless a change came meanwhile."""
    global _listed
    generation = _generation
    found = await database_sync_to_async(_read)(name)
    if generation == _generation:
        if name is None:
            _listed = (_expiry(), found)
        else:
            if len(_by_name) >= _MAX_ENTRIES:
                _by_name.clear()
            _by_name[name] = (_expiry(), found[0] if found else None)
    return found


def _expiry() -> float:
    return time.monotonic() + settings.MOC_DATAPLANE_CACHE_S


def _read(name: str | None) -> list[Route]:
    """The routes of the deployment `name` (whatever its state), or of all not retired; five queries
    however many deployments."""
    rows = traffic.routed_deployments().select_related("owner")
    rows = rows.filter(name=name) if name is not None else rows.exclude(state=DeploymentState.RETIRED)
    deployments = list(rows)
    if not deployments:
        return []
    opened: dict[int, list[Release]] = {}
    for release in traffic.open_releases([d.pk for d in deployments]):
        opened.setdefault(release.deployment_id, []).append(release)
    splits = {d.pk: split_from(d.current_release, opened.get(d.pk, ())) for d in deployments}
    fallbacks = traffic.rolled_back_to([d.current_release_id for d in deployments if d.current_release_id])
    releases = [r for s in splits.values() for r in (s.stable, s.canary) if r is not None]
    releases += fallbacks.values()
    targets = _targets(r.pk for r in releases)
    loading = set(
        Placement.objects.filter(releases__in=[r.pk for r in releases], state__in=ON_ITS_WAY)
        .values_list("releases", flat=True)
        .order_by()
    )

    def side(deployment: Deployment, release: Release | None) -> Side | None:
        if release is None:
            return None
        version = release.model_version
        return Side(
            release_id=release.pk,
            version_id=version.pk,
            version_label=str(version),
            kind=version.kind,
            format=version.format,
            limits=traffic.deployment_limits(deployment, version),
            targets=targets.get(release.pk, ()),
            loading=release.pk in loading,
        )

    out = []
    for d in deployments:
        split = splits[d.pk]
        fallback = fallbacks.get(d.current_release_id or 0)
        out.append(
            Route(
                deployment_id=d.pk,
                name=d.name,
                state=d.state,
                created=int(d.created_at.timestamp()),
                owned_by=d.owner.get_username() if d.owner else "moc",
                max_model_len=_context_length(split.stable),
                wake_timeout_s=d.wake_timeout_s,
                stable=side(d, split.stable),
                canary=side(d, split.canary),
                canary_percent=split.canary_percent,
                # Only while it has a loaded replica: it answers instead of waiting, it is never woken.
                fallback=side(d, fallback) if fallback is not None and fallback.pk in targets else None,
            )
        )
    return out


def _targets(release_ids: Iterable[int]) -> dict[int, tuple[Target, ...]]:
    """The placements each release may be asked on (traffic.loaded_placements), as targets."""
    rows = (
        traffic.loaded_placements(list(release_ids))
        .select_related("device__node")
        .annotate(release=F("releases"))
    )
    found: dict[int, list[Target]] = {}
    for placement in rows.order_by("pk"):
        target = Target(placement_id=placement.pk, queue=placement.device.queue, device=str(placement.device))
        found.setdefault(placement.release, []).append(target)
    return {release_id: tuple(targets) for release_id, targets in found.items()}


def _context_length(release: Release | None) -> int | None:
    """The version's context length as its metadata records it (the registry's key for it, whatever
    the format called it), or None."""
    value = (release.model_version.metadata or {}).get("context_length") if release else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
