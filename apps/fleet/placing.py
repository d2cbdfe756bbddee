"""Putting model versions on devices and taking them off: the scheduler's decisions, made real.

The rules live in apps.fleet.domain.scheduler and .eviction (pure); this module reads the rows
they need, locks the candidate devices, writes the decision back and sends the work to the
device's own worker queue once the transaction commits.

Why it cannot over-commit a device: the candidate devices' rows are locked (SELECT ... FOR
UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions serialise writers) before their
placements are summed, so two requests for one device are decided one after the other, each
seeing what the other reserved. Victims of an eviction still count as held until their worker
says they are gone (UNLOADED), and the placement they made room for loads only then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.core.domain.errors import Conflict
from apps.core.workers import live_queues, redis_client
from apps.fleet import services, telemetry
from apps.fleet.domain import eviction, scheduler
from apps.fleet.domain.states import (
    PLACEABLE_HEALTH,
    PLACEMENT_ACTIVE,
    PLACEMENT_ON_WORKER,
    NodeState,
    PlacementState,
)
from apps.fleet.models import Device, InferenceRecord, Placement, ServingProfile
from apps.jobs.domain.states import JOB_ACTIVE
from apps.jobs.models import Job
from apps.models.domain.states import ValidationState
from apps.models.models import ModelVersion

P = PlacementState
log = logging.getLogger(__name__)


class PlacementRefused(Conflict):
    """No device can take the version now; the message says why, in the scheduler's words."""

    code = "placement_refused"


def profile_for(version: ModelVersion) -> ServingProfile | None:
    return ServingProfile.objects.filter(version=version).first()


def need_bytes(version: ModelVersion) -> int:
    """What a new placement of `version` reserves: what its latest measured load took, else the
    registry's estimate, else its files' size (the estimator corrected by what loads really took)."""
    measured = (
        Placement.objects.filter(version=version, measured_bytes__isnull=False)
        .order_by("-loaded_at", "-pk")
        .values_list("measured_bytes", flat=True)
        .first()
    )
    return int(measured or version.estimated_vram_bytes or version.size_bytes or 1)


def version_base(version: ModelVersion) -> ModelVersion | None:
    """The version an adapter is built on: its lineage parent, else the registered version at the
    path its adapter_config names. None for versions that stand alone."""
    if version.kind != "adapter":
        return None
    if version.parent_id is not None:
        return version.parent
    named = ((version.metadata or {}).get("adapter") or {}).get("base_model_name_or_path")
    if not isinstance(named, str) or not named:
        return None
    return ModelVersion.objects.filter(path=named.rstrip("/"), archived=False).order_by("-number").first()


def _check_loadable(version: ModelVersion) -> None:
    from apps.fleet.runtimes import tasks_for

    if version.validation_state == ValidationState.INVALID:
        why = version.validation_error or "see its validation report"
        raise ValidationError({"version": f"{version} failed validation and cannot be loaded: {why}"})
    if version.archived:
        raise ValidationError({"version": f"{version} is archived."})
    if version.kind != "adapter" and not tasks_for(version.kind, version.format):
        raise ValidationError(
            {"version": f"{version} is a {version.kind or 'model of unknown kind'}, which MOC cannot serve."}
        )


@transaction.atomic
def placement_load(
    *,
    version: ModelVersion,
    device: Device | None = None,
    node: str | None = None,
    pinned: bool | None = None,
    keep_alive_s: int | None = None,
    requested_by: Any = None,
    exclude_devices: Iterable[int] = (),
    evict: bool = True,
    now: float | None = None,
) -> Placement:
    """Load `version` somewhere it fits (or on `device` / `node`), evicting idle placements by
    the policy where room is needed. An active placement that already matches is returned as it
    is. An adapter brings its base first, onto the same device. With `evict` False only free
    room will do. Raises PlacementRefused with the scheduler's reason, or ValidationError for a
    version that cannot be served at all."""
    _check_loadable(version)
    now = time.time() if now is None else now
    profile = profile_for(version)
    existing = _active(version, device=device, node=node, exclude=exclude_devices)
    if existing is not None:
        return existing
    base_placement = None
    base = version_base(version)
    if version.kind == "adapter":
        if base is None:
            raise ValidationError({"version": f"{version} is an adapter whose base model is not registered."})
        base_placement = placement_load(
            version=base,
            device=device,
            node=node,
            requested_by=requested_by,
            exclude_devices=exclude_devices,
            evict=evict,
        )
        device = base_placement.device
    candidates = _lock_candidates(device=device, node=node, exclude=exclude_devices)
    # Again under the lock: a concurrent request for the same version may have placed it meanwhile.
    existing = _active(version, device=device, node=node, exclude=exclude_devices)
    if existing is not None:
        return existing
    if device is not None and _active(version, device=device, node=None, exclude=(), unloading=True):
        raise PlacementRefused(f"{version} is being unloaded from {device}; load it again once it is gone.")
    need = need_bytes(version)
    # An adapter's base is in use by the adapter about to load on it: never its victim.
    protect = {base_placement.pk} if base_placement else set()
    views = device_views(candidates, now=now, protect=protect)
    decision = scheduler.decide(
        scheduler.Request(
            version_id=version.pk, need_bytes=need, device_id=device.pk if device else None, node=node or None
        ),
        views,
        now=now,
        policy=eviction.Policy(settings.MOC_EVICTION_POLICY),
        min_residency_s=settings.MOC_PLACEMENT_MIN_RESIDENCY_S,
    )
    if isinstance(decision, scheduler.Refusal):
        raise PlacementRefused(f"{version} cannot be placed: {decision.reason}.")
    if decision.evict and not evict:
        raise PlacementRefused(f"{version} cannot be placed without evicting, which was not allowed.")
    chosen = next(d for d in candidates if d.pk == decision.device_id)
    placement = services.placement_request(
        version=version,
        device=chosen,
        reserved_bytes=need,
        pinned=profile.pinned if pinned is None and profile else bool(pinned),
        keep_alive_s=keep_alive_s
        or (profile and profile.keep_alive_s)
        or settings.MOC_PLACEMENT_KEEP_ALIVE_S,
        depends_on=base_placement,
        requested_by=requested_by,
    )
    if decision.evict:
        view = next(v for v in views if v.id == chosen.pk)
        Device.objects.filter(pk=chosen.pk).update(
            eviction_clock=eviction.clock_after(view.clock, decision.evict)
        )
        for victim in Placement.objects.filter(pk__in=[r.placement_id for r in decision.evict]):
            placement_unload(
                placement=victim, reason=f"evicted to make room for {version}", displaced_by=placement
            )
    _send_on_commit("placement_load", placement)
    return placement


def _active(
    version: ModelVersion,
    *,
    device: Device | None,
    node: str | None,
    exclude: Iterable[int],
    unloading: bool = False,
) -> Placement | None:
    """The version's placement that is (or is about to be) loaded where asked; with `unloading`,
    one on its way out instead (it still holds the device, but serves no more)."""
    states = [P.UNLOADING] if unloading else [P.REQUESTED, P.LOADING, P.LOADED]
    found = Placement.objects.select_related("device__node").filter(version=version, state__in=states)
    if device is not None:
        found = found.filter(device=device)
    if node:
        found = found.filter(device__node__name=node)
    return found.exclude(device_id__in=list(exclude)).order_by("pk").first()


def _lock_candidates(*, device: Device | None, node: str | None, exclude: Iterable[int]) -> list[Device]:
    """The devices the decision may choose among, locked in id order (no deadlocks between
    requests locking overlapping sets)."""
    rows = Device.objects.select_for_update(of=("self",)).select_related("node").order_by("pk")
    if device is not None:
        rows = rows.filter(pk=device.pk)
    if node:
        rows = rows.filter(node__name=node)
    return list(rows.exclude(pk__in=list(exclude)))


def device_views(
    devices: Sequence[Device], *, now: float, protect: Iterable[int] = ()
) -> list[scheduler.DeviceView]:
    """The scheduler's picture of `devices`: capacity, what MOC holds there (placements, running
    jobs' reservations), what the device itself reports free, and the placements on it
    (those in `protect` counted busy, so never victims).

    The device's own report cannot show placements that are still requested or loading, so
    their bytes come off what it reports free; the scheduler then takes the lower of that and
    capacity minus what MOC holds, and memory used outside MOC is respected too."""
    protected = set(protect)
    ids = [d.pk for d in devices]
    placements = Placement.objects.filter(device_id__in=ids, state__in=PLACEMENT_ACTIVE)
    with_dependents = set(
        Placement.objects.filter(depends_on__device_id__in=ids, state__in=PLACEMENT_ACTIVE).values_list(
            "depends_on_id", flat=True
        )
    )
    jobs = dict(
        Job.objects.filter(device_id__in=ids, state__in=JOB_ACTIVE)
        .values_list("device_id")
        .annotate(total=Sum("reserved_bytes"))
        .values_list("device_id", "total")
    )
    reported = reported_free_bytes()
    idle_after = now - settings.MOC_PLACEMENT_IDLE_S
    residents: dict[int, list[eviction.Resident]] = {pk: [] for pk in ids}
    placed: dict[int, int] = dict.fromkeys(ids, 0)
    unseen: dict[int, int] = dict.fromkeys(ids, 0)  # promised, not yet in the device's report
    for p in placements:
        placed[p.device_id] += p.held_bytes
        if p.state in (P.REQUESTED, P.LOADING):
            unseen[p.device_id] += p.held_bytes
        loaded_at = (p.loaded_at or p.created_at).timestamp()
        last_used = p.last_used_at.timestamp() if p.last_used_at else loaded_at
        busy = p.state != P.LOADED or last_used > idle_after or p.pk in with_dependents or p.pk in protected
        residents[p.device_id].append(
            eviction.Resident(
                placement_id=p.pk,
                version_id=p.version_id,
                size_bytes=p.held_bytes,
                loaded_at=loaded_at,
                last_used=last_used,
                uses=p.use_count,
                load_seconds=p.load_seconds or 1.0,
                pinned=p.pinned,
                busy=busy,
                priority=p.priority,
            )
        )
    return [
        scheduler.DeviceView(
            id=d.pk,
            label=f"{d.node.name} {d.kind} {d.index}",
            node=d.node.name,
            capacity_bytes=d.capacity_bytes,
            placed_bytes=placed[d.pk] + int(jobs.get(d.pk) or 0),
            reported_free_bytes=None if d.pk not in reported else max(0, reported[d.pk] - unseen[d.pk]),
            accepts=d.health in PLACEABLE_HEALTH and d.node.state == NodeState.ONLINE,
            why_not=_why_not(d),
            residents=tuple(residents[d.pk]),
            clock=d.eviction_clock,
        )
        for d in devices
    ]


def _why_not(device: Device) -> str:
    if device.node.state != NodeState.ONLINE:
        return f"its node is {device.node.state}"
    if device.health not in PLACEABLE_HEALTH:
        return f"it is {device.health}" + (f" ({device.health_reason})" if device.health_reason else "")
    return ""


def reported_free_bytes() -> dict[int, int]:
    """Free memory per device id as the devices last reported it; empty when Redis is away
    (the scheduler then goes by what MOC placed alone)."""
    try:
        nodes = telemetry.latest(redis_client())
    except redis.RedisError:
        return {}
    return {
        d["id"]: int(d["mem_free_bytes"])
        for node in nodes
        for d in node.get("devices", [])
        if isinstance(d.get("id"), int) and isinstance(d.get("mem_free_bytes"), int)
    }


@transaction.atomic
def placement_unload(
    *, placement: Placement, reason: str, displaced_by: Placement | None = None, cascade: bool = True
) -> bool:
    """Take a placement off its device. One still waiting for a worker is simply cancelled; one
    loading or loaded goes UNLOADING and its worker frees it (and drains its requests first).
    Adapters built on it go with it. False when it was no longer active."""
    placement.refresh_from_db()
    if placement.state not in PLACEMENT_ACTIVE:
        return False
    if cascade:
        for dependent in Placement.objects.filter(depends_on=placement, state__in=PLACEMENT_ACTIVE):
            placement_unload(placement=dependent, reason=f"its base was unloaded ({reason})")
    if placement.state == P.REQUESTED:
        return services.placement_move(placement=placement, to=P.UNLOADED, end_reason=reason)
    # One already on its way out (keep-alive, a person) has had its unload sent; the placement
    # it was chosen to make room for must still wait for it to be gone.
    already = placement.state == P.UNLOADING
    if not already and not services.placement_move(placement=placement, to=P.UNLOADING, end_reason=reason):
        return False
    if displaced_by is not None:
        Placement.objects.filter(pk=placement.pk, displaced_by__isnull=True).update(displaced_by=displaced_by)
    if not already:
        _send_on_commit("placement_unload", placement)
    return True


@transaction.atomic
def placement_pin(*, placement: Placement, pinned: bool) -> Placement:
    if placement.state not in PLACEMENT_ACTIVE:
        raise ValidationError(
            {"pinned": f"Placement {placement.pk} is {placement.state}: only active ones pin."}
        )
    Placement.objects.filter(pk=placement.pk).update(pinned=pinned, updated_at=timezone.now())
    placement.pinned = pinned
    from apps.core import audit

    audit.record("update", placement, changes={"pinned": [not pinned, pinned]})
    return placement


def _send_on_commit(task_name: str, placement: Placement) -> None:
    from apps.fleet import tasks

    task = getattr(tasks, task_name)
    queue = placement.device.queue
    transaction.on_commit(lambda: task.apply_async(args=[placement.pk], queue=queue))


# --- housekeeping (beat) ------------------------------------------------------------------


def placements_expire_idle(*, now: float | None = None) -> int:
    """Unload placements unused past their keep-alive (pinned ones and bases of live adapters stay)."""
    moment = timezone.now() if now is None else datetime.fromtimestamp(now, tz=UTC)
    count = 0
    loaded = Placement.objects.filter(state=P.LOADED, pinned=False).exclude(
        pk__in=Placement.objects.filter(state__in=PLACEMENT_ACTIVE, depends_on__isnull=False).values(
            "depends_on_id"
        )
    )
    for p in loaded.select_related("device__node", "version__model"):
        last = p.last_used_at or p.loaded_at or p.created_at
        idle_s = (moment - last).total_seconds()
        if idle_s >= p.keep_alive_s and placement_unload(
            placement=p, reason=f"unused for {int(idle_s)} s (keep-alive {p.keep_alive_s} s)"
        ):
            count += 1
    return count


def placements_reconcile(*, now: float | None = None) -> dict[str, int]:
    """The reaper, so nothing stays requested, loading or unloading forever and what it held is
    freed: placements whose worker is gone are LOST; requests no worker took in time, and loads
    that never finished, FAILED; unloads that did not end are sent again."""
    moment = timezone.now() if now is None else datetime.fromtimestamp(now, tz=UTC)
    try:
        alive = live_queues()
    except redis.RedisError:
        alive = set()
    counts = {"lost": 0, "failed": 0, "unloads_resent": 0}
    # The reaper runs on a `default` worker, which keeps a heartbeat too: without that one the
    # heartbeats are not to be trusted (Redis restarted moments ago and they are coming back).
    if settings.CELERY_TASK_DEFAULT_QUEUE in alive:
        grace = timedelta(seconds=settings.MOC_WORKER_HEARTBEAT_S * 3)
        on_worker = Placement.objects.filter(state__in=PLACEMENT_ON_WORKER, updated_at__lt=moment - grace)
        for p in on_worker.select_related("device__node"):
            if p.device.queue not in alive and services.placement_move(
                placement=p,
                to=P.LOST,
                error_class="device_lost",
                error=f"Lost: no worker consumes {p.device.queue} any more (it stopped or died).",
            ):
                counts["lost"] += 1
    # Requests count from their creation; loads from their move to LOADING (their last update).
    stale = [
        (
            P.REQUESTED,
            "created_at",
            settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S,
            "No worker took it within {} s.",
        ),
        (
            P.LOADING,
            "updated_at",
            settings.MOC_PLACEMENT_LOAD_TIMEOUT_S,
            "Still loading after {} s; given up.",
        ),
    ]
    for state, since, limit_s, error in stale:
        cutoff = moment - timedelta(seconds=limit_s)
        for p in Placement.objects.filter(state=state, **{f"{since}__lt": cutoff}):
            if services.placement_move(
                placement=p, to=P.FAILED, error_class="timeout", error=error.format(limit_s)
            ):
                counts["failed"] += 1
    # An unload whose message was lost, or whose worker failed to record it, is asked again:
    # unloading is safe to repeat.
    resend_before = moment - timedelta(seconds=settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S)
    for p in Placement.objects.filter(state=P.UNLOADING, updated_at__lt=resend_before).select_related(
        "device__node"
    ):
        _send_on_commit("placement_unload", p)
        counts["unloads_resent"] += 1
    return counts


def profile_timeout_s(version: ModelVersion) -> float:
    """A request's time limit for `version`: its serving profile's, else the default."""
    profile = profile_for(version)
    return (profile and profile.request_timeout_s) or settings.MOC_SERVING_TIMEOUT_S


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
