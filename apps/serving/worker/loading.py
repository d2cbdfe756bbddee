"""Loading and unloading placements on a device worker, and what follows when that fails.

Called by the thin tasks in apps.serving.tasks, which arrive on the device's own queue. Every
step is safe to run twice: a duplicate or late message finds the placement already moved on.
Failures are classified (apps.serving.domain.errors) and each class has its recovery: transient
ones are retried with backoff, an out-of-memory load is re-placed on another device once, a
lost device is marked unhealthy and what it held is placed elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.fleet import services as fleet_services
from apps.fleet.domain.states import DeviceHealth
from apps.fleet.models import Device
from apps.serving import metrics, placing, runtimes, services
from apps.serving.domain.errors import (
    ErrorClass,
    Recovery,
    ServingError,
    backoff_s,
    classify,
    recovery,
)
from apps.serving.domain.eviction import gdsf_priority
from apps.serving.domain.states import PLACEMENT_ACTIVE, PLACEMENT_ON_WORKER, PlacementState
from apps.serving.models import Placement
from apps.serving.resilience import Breakers
from apps.serving.worker.device import device_id, torch_device
from apps.serving.worker.residents import RESIDENTS

log = logging.getLogger(__name__)
P = PlacementState


WAIT_S = 0.25  # how soon a load waiting for its base or for evictions looks again


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    retry_in: float | None = None  # look again after this many seconds (waiting, or a transient error)
    note: str = ""


def load(placement_id: int, *, attempt: int) -> LoadOutcome:
    """Load a placement into this worker, unless it is waiting for room or for its base."""
    p = (
        Placement.objects.select_related("version", "device__node", "depends_on")
        .filter(pk=placement_id)
        .first()
    )
    if p is None or p.state not in (P.REQUESTED, P.LOADING):
        return LoadOutcome(note="not waiting to load")
    if device_id() is None:  # the serving start (after the agent registers the device) has not run yet
        return LoadOutcome(retry_in=WAIT_S, note="this worker is still starting")
    if p.device_id != device_id():
        log.error(
            "placement %s is for device %s but reached the worker of device %s",
            p.pk,
            p.device_id,
            device_id(),
        )
        return LoadOutcome(note="wrong worker")
    if Placement.objects.filter(displaced_by=p, state__in=PLACEMENT_ACTIVE).exists():
        return LoadOutcome(retry_in=WAIT_S, note="waiting for the placements evicted for it to unload")
    base = None
    if p.depends_on is not None:
        base_state = p.depends_on.state
        if base_state not in PLACEMENT_ACTIVE:
            services.placement_move(
                placement=p,
                to=P.FAILED,
                error_class=ErrorClass.INTERNAL,
                error=f"Its base placement {base_state}.",
            )
            return LoadOutcome(note="base gone")
        base = RESIDENTS.get(p.depends_on_id)
        if base is None:
            return LoadOutcome(retry_in=WAIT_S, note="waiting for its base to load")
    if p.state == P.REQUESTED and not services.placement_move(placement=p, to=P.LOADING):
        return LoadOutcome(note="moved by another writer")
    try:
        with RESIDENTS.loading(p.pk):
            loaded = _into_memory(p, base)
            # Inside the loading mark: an unload arriving now finds the load running, never a gap.
            RESIDENTS.add(p.pk, loaded)
    except Exception as exc:
        return _load_failed(p, exc, attempt=attempt)
    metrics.PLACEMENT_LOAD_SECONDS.observe(loaded.load_seconds)
    try:
        moved = services.placement_move(
            placement=p, to=P.LOADED, measured_bytes=loaded.measured_bytes, load_seconds=loaded.load_seconds
        )
    except Exception:
        _drop(p.pk)  # recording it failed (the database): do not hold what nobody knows is here
        raise
    if not moved:
        return LoadOutcome(note=_ended_while_loading(p, "it was unloaded while it loaded"))
    # Its first eviction priority: as if used once, so it does not start below the device's clock.
    priority = gdsf_priority(
        clock=p.device.eviction_clock,
        uses=1,
        load_seconds=loaded.load_seconds,
        size_bytes=max(1, loaded.measured_bytes),
    )
    Placement.objects.filter(pk=p.pk).update(priority=priority)
    return LoadOutcome(note="loaded")


def _into_memory(p: Placement, base: Any) -> Any:
    profile = placing.profile_for(p.version)
    spec = runtimes.LoadSpec(
        path=p.version.path,
        format=p.version.format,
        kind=p.version.kind,
        device=torch_device(p.device),
        allow_pickle=bool(profile and profile.allow_pickle),
        base=base,
    )
    return runtimes.load(spec)


def _drop(placement_id: int) -> str:
    """Free whatever this worker holds for the placement, now, without waiting for requests."""
    loaded, _ = RESIDENTS.remove(placement_id, drain_s=0)
    if loaded is None:
        return "it was not in this worker's memory"
    try:
        freed = loaded.close()
    except Exception as exc:  # the device may be gone; the weights go with the process's memory
        log.exception("placement %s: closing its model failed", placement_id)
        return f"closing it failed: {type(exc).__name__}: {exc}"
    return f"freed {freed.freed_bytes} bytes" + ("" if freed.verified else f"; not verified: {freed.detail}")


def free_orphans() -> list[int]:
    """Free the models this worker holds whose placement ended behind its back (the reaper gave
    up on it, its device was lost, an operator's move raced a load): the database already counts
    their memory as free, so the worker must make it so."""
    held = [pk for pk in RESIDENTS.ids() if not RESIDENTS.is_loading(pk)]
    if not held:
        return []
    alive = set(
        Placement.objects.filter(pk__in=held, state__in=PLACEMENT_ON_WORKER).values_list("pk", flat=True)
    )
    orphans = [pk for pk in held if pk not in alive]
    for pk in orphans:
        log.warning("placement %s ended while this worker held it: %s", pk, _drop(pk))
    return orphans


def _ended_while_loading(p: Placement, why: str) -> str:
    """The placement left LOADING while its load ran (unloaded, reaped, lost with its device): free
    the model, and finish an unload that waited for the load."""
    note = _drop(p.pk)
    p.refresh_from_db()
    if p.state == P.UNLOADING:
        services.placement_move(placement=p, to=P.UNLOADED, end_reason=f"{p.end_reason} ({why}; {note})")
    return f"{why}: {note}"


def _load_failed(p: Placement, exc: Exception, *, attempt: int) -> LoadOutcome:
    error_class = classify(exc)
    metrics.SERVING_ERRORS.labels(stage="load", error_class=error_class.value).inc()
    p.refresh_from_db()
    if p.state != P.LOADING:  # unloaded or lost meanwhile: no retry, no recovery, only the unload to end
        return LoadOutcome(note=_ended_while_loading(p, f"its load failed ({error_class.value}: {exc})"))
    if recovery(error_class) == Recovery.RETRY and attempt < settings.MOC_LOAD_RETRIES:
        wait = backoff_s(attempt + 1, base_s=settings.MOC_LOAD_BACKOFF_S, cap_s=30.0)
        log.warning("placement %s: transient load error (%s), retrying in %.1f s", p.pk, exc, wait)
        return LoadOutcome(retry_in=wait, note="transient")
    if not isinstance(exc, ServingError):
        log.exception("placement %s failed to load", p.pk, exc_info=exc)
    message = f"{error_class.value}: {exc}"[:4000]
    then = recovery(error_class)
    if then == Recovery.REPLACE:  # this placement goes with the others its device held
        device_lost(p.device, reason=str(exc))
        return LoadOutcome(note=message)
    services.placement_move(placement=p, to=P.FAILED, error_class=error_class, error=message)
    if then == Recovery.EVICT_AND_RETRY:
        _replace_after_oom(p)
    return LoadOutcome(note=message)


def _replace_after_oom(p: Placement) -> None:
    """An out-of-memory load tries another device once: a version that ran out of memory on two
    devices in the last hour stays failed until someone looks at it."""
    recent = Placement.objects.filter(
        version=p.version,
        error_class=ErrorClass.OUT_OF_MEMORY,
        ended_at__gte=timezone.now() - timedelta(hours=1),
    )
    if p.depends_on_id is not None or recent.count() > 1:
        return
    try:
        again = placing.placement_load(
            version=p.version, exclude_devices=[p.device_id], requested_by=p.requested_by
        )
    except (placing.PlacementRefused, ValidationError) as exc:
        log.warning("placement %s ran out of memory and no other device can take it: %s", p.pk, exc)
        return
    log.warning(
        "placement %s ran out of memory on %s; placed again as %s on %s",
        p.pk,
        p.device,
        again.pk,
        again.device,
    )


def device_lost(device: Device, *, reason: str) -> None:
    """The device stopped answering: it takes no more work, and what it held is placed elsewhere."""
    device.refresh_from_db()
    if device.health != DeviceHealth.UNHEALTHY:
        fleet_services.device_set_health(
            device=device, health=DeviceHealth.UNHEALTHY, reason=f"lost: {reason}"[:300]
        )
    for p in Placement.objects.filter(device=device, state__in=PLACEMENT_ACTIVE).select_related("version"):
        RESIDENTS.remove(p.pk, drain_s=0)
        placing.placement_lost(p, error=f"Lost with its device: {reason}", reload=placing.Reload.ELSEWHERE)


def unload(placement_id: int) -> str:
    """Free an UNLOADING placement once its requests drained; the memory counts as free only now."""
    p = Placement.objects.select_related("device").filter(pk=placement_id).first()
    if p is None or p.state != P.UNLOADING:
        return "not unloading"
    if RESIDENTS.is_loading(p.pk):
        return "still loading: the load frees it when it ends"
    drain_s = placing.profile_timeout_s(p.version)
    # Requests drain first; then the model is freed whatever happens, and the placement ends.
    _, still_running = RESIDENTS.drain(p.pk, drain_s=drain_s)
    note = _drop(p.pk)
    if still_running:
        note += f"; {still_running} requests were still running after {drain_s:.0f} s"
    services.placement_move(placement=p, to=P.UNLOADED, end_reason=f"{p.end_reason} ({note})")
    with contextlib.suppress(redis.RedisError):  # it would expire by itself within a day
        Breakers(redis_client()).forget(p.pk)
    return note
