"""Loading and unloading placements on a device worker, and what follows when that fails.

Called by the thin tasks in apps.serving.tasks, which arrive on the device's own queue. Every
step is safe to run twice: a duplicate or late message finds the placement already moved on.
Failures are classified (apps.serving.domain.errors) and each class has its recovery: transient
ones are retried with backoff, an out-of-memory load is re-placed on another device once, a
lost device is marked unhealthy and what it held is placed elsewhere.

Every load is guarded (apps.serving.runtimes.guard), one at a time in this process (the meters
count the whole process): on a device that keeps weights in host memory it starts only if the host's
available memory, less what the other loads not yet done on the node's host-memory devices were
promised, can take its reservation; while it runs it is stopped once it takes more than its
reservation allows (MOC_LOAD_GUARD_MARGIN), and once its placement ends (unloaded, reaped, lost).
The unload message may wait behind the load in this worker's pool, so a thread beside the load also
asks the database every WATCH_S whether the placement is still loading.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from apps.core.domain.units import format_bytes
from apps.core.redis_clients import redis_client
from apps.fleet import services as fleet_services
from apps.fleet.devices.cpu import host_memory
from apps.fleet.domain.states import DeviceHealth
from apps.fleet.models import Device
from apps.serving import metrics, placing, runtimes, services
from apps.serving.domain import load_guard
from apps.serving.domain.errors import (
    ErrorClass,
    HostShortfall,
    Recovery,
    ServingError,
    backoff_s,
    classify,
    recovery,
)
from apps.serving.domain.eviction import gdsf_priority
from apps.serving.domain.states import PLACEMENT_ACTIVE, PLACEMENT_ON_WORKER, PlacementState
from apps.serving.models import Placement
from apps.serving.placing.devices import host_unseen, in_host_memory
from apps.serving.placing.load import weights_bytes
from apps.serving.resilience import Breakers
from apps.serving.runtimes.guard import Guard, LoadCancelled, OverReservation, free_failed_load
from apps.serving.worker.device import device_id, torch_device
from apps.serving.worker.residents import RESIDENTS

log = logging.getLogger(__name__)
P = PlacementState


WAIT_S = 0.25  # how soon a load waiting for its base or for evictions looks again
SLOT_WAIT_S = 1.0  # how long a load waits in its thread for the one running here before it looks again
WATCH_S = 0.5  # how often a running load's placement is looked at, to stop the load once it ended
WATCH_JOIN_S = 2.0  # how long a load's end waits for that look, should the database hang
COMPLAIN_EVERY_S = 60.0  # a look that keeps failing is logged this often, not every WATCH_S


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
    guard = Guard(
        reserved_bytes=p.reserved_bytes,
        limit_bytes=load_guard.limit_bytes(p.reserved_bytes, margin=settings.MOC_LOAD_GUARD_MARGIN),
        requests_in_flight=RESIDENTS.in_flight,
    )
    if not RESIDENTS.start_loading(p.pk, guard, wait_s=SLOT_WAIT_S):
        return LoadOutcome(retry_in=WAIT_S, note="waiting for the load running in this worker")
    try:
        p.refresh_from_db(fields=["state"])  # the load that held the slot may have been this one
        if p.state not in (P.REQUESTED, P.LOADING):
            return LoadOutcome(note="not waiting to load")
        if p.state == P.REQUESTED and not services.placement_move(placement=p, to=P.LOADING):
            return LoadOutcome(note="moved by another writer")
        loaded = _load_in_slot(p, base, guard, attempt=attempt)
    finally:
        RESIDENTS.end_loading(p.pk, guard)
    if isinstance(loaded, LoadOutcome):
        return loaded
    metrics.PLACEMENT_LOAD_SECONDS.observe(loaded.load_seconds)
    # Never below the weights the registry read: a runtime's floor counts what it knows of (an ONNX
    # graph's own file, not its external data), and mapped pages a load did not touch are not in
    # its meter yet, but they are the model's, and a later load of the same kind reserves this.
    measured = max(loaded.measured_bytes, weights_bytes(p.version))
    try:
        moved = services.placement_move(
            placement=p, to=P.LOADED, measured_bytes=measured, load_seconds=loaded.load_seconds
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
        size_bytes=max(1, measured),
    )
    Placement.objects.filter(pk=p.pk).update(priority=priority)
    return LoadOutcome(note="loaded")


def _load_in_slot(p: Placement, base: Any, guard: Guard, *, attempt: int) -> Any:
    """The load itself, holding this process's load slot: the model, held by RESIDENTS, or the
    outcome of its failure once what it took was freed (before the next load may start)."""
    started = time.monotonic()
    try:
        with _stopped_once_ended(p.pk, guard):
            _check_host_memory(p)
            loaded = _into_memory(p, base, guard)
            # Inside the loading mark: an unload arriving now finds the load running, never a gap.
            RESIDENTS.add(p.pk, loaded)
    except Exception as exc:
        free_failed_load(exc, torch_device(p.device))
        if isinstance(exc, LoadCancelled):
            return LoadOutcome(
                note=_ended_while_loading(p, f"{exc}: stopped after {time.monotonic() - started:.1f} s")
            )
        return _load_failed(p, exc, attempt=attempt)
    return loaded


def _into_memory(p: Placement, base: Any, guard: Guard) -> Any:
    profile = placing.profile_for(p.version)
    spec = runtimes.LoadSpec(
        path=p.version.path,
        format=p.version.format,
        kind=p.version.kind,
        device=torch_device(p.device),
        allow_pickle=bool(profile and profile.allow_pickle),
        base=base,
        guard=guard,
    )
    return runtimes.load(spec)


def _check_host_memory(p: Placement) -> None:
    """On a device that keeps weights in host memory, refuse a load the host cannot take now, before
    any file is opened: the scheduler went by the node's last report (if it had one), this is the
    host itself as the load starts, less what the node's other loads not yet done were promised
    (each simulated GPU has a worker process of its own, loading into the same RAM). Weights larger
    than the host's available memory are refused as out of memory here, not found out by the
    runtime's mmap failing."""
    if not in_host_memory(p.device):
        return
    node = p.device.node.name
    why = load_guard.host_shortfall(
        host_memory().available_bytes,
        reserved_bytes=p.reserved_bytes,
        promised_bytes=host_unseen({node}, yielding_to=p.pk).get(node, 0),
        weights_bytes=weights_bytes(p.version),
    )
    if why is not None:
        raise HostShortfall(why)


@contextlib.contextmanager
def _stopped_once_ended(placement_id: int, guard: Guard) -> Iterator[None]:
    """Stop the load once its placement leaves LOADING, as a thread beside it finds in the database."""
    done = threading.Event()

    def watch() -> None:
        failed, complained_at = 0, -COMPLAIN_EVERY_S
        try:
            while not done.wait(WATCH_S):
                try:
                    state = _state_of(placement_id)
                except Exception as exc:  # the load goes on; the next look may get through
                    failed += 1
                    if time.monotonic() - complained_at >= COMPLAIN_EVERY_S:
                        complained_at = time.monotonic()
                        log.warning(
                            "placement %s: could not look at it while it loads (%d tries failed): %s",
                            placement_id,
                            failed,
                            exc,
                        )
                    continue
                # None: not visible from here (yet); a deleted placement ends the load as it finishes.
                if state is not None and state != P.LOADING:
                    why = "unloaded during load" if state == P.UNLOADING else f"it became {state} during load"
                    guard.stop(why)
                    return
        finally:
            connection.close()  # this thread's own connection

    watcher = threading.Thread(target=watch, name=f"moc-load-watch-{placement_id}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(WATCH_JOIN_S)
        if watcher.is_alive():  # a daemon thread: it ends with its look, or with the process
            log.warning("placement %s: the look at it did not end within %.0f s", placement_id, WATCH_JOIN_S)


def _state_of(placement_id: int) -> str | None:
    return Placement.objects.filter(pk=placement_id).values_list("state", flat=True).first()


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
    return f"freed {format_bytes(freed.freed_bytes)}" + (
        "" if freed.verified else f"; not verified: {freed.detail}"
    )


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
    the model, if the load got as far as holding one, and finish an unload that waited for the load."""
    if p.pk in RESIDENTS.ids():
        why = f"{why}; {_drop(p.pk)}"
    p.refresh_from_db()
    if p.state == P.UNLOADING:
        services.placement_move(placement=p, to=P.UNLOADED, end_reason=f"{p.end_reason} ({why})")
    return why


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
    message = str(exc)[:4000]  # its class is recorded beside it, and shown beside it
    then = recovery(error_class)
    if then == Recovery.REPLACE:  # this placement goes with the others its device held
        device_lost(p.device, reason=str(exc))
        return LoadOutcome(note=f"{error_class.value}: {message}")
    services.placement_move(placement=p, to=P.FAILED, error_class=error_class, error=message)
    # A load that outgrew its reservation would outgrow it on any device: it is not tried again,
    # unless the figure may have counted more than the load.
    if then == Recovery.EVICT_AND_RETRY and not (isinstance(exc, OverReservation) and not exc.replaceable):
        _replace_after_oom(p, host_short=isinstance(exc, HostShortfall))
    return LoadOutcome(note=f"{error_class.value}: {message}")


def _replace_after_oom(p: Placement, *, host_short: bool) -> None:
    """An out-of-memory load tries another device once: a version that ran out of memory on two
    devices in the last hour stays failed until someone looks at it. A load its host could not take
    (`host_short`) tries another node: the node's other devices share that host's memory."""
    recent = Placement.objects.filter(
        version=p.version,
        error_class=ErrorClass.OUT_OF_MEMORY,
        ended_at__gte=timezone.now() - timedelta(hours=1),
    )
    if p.depends_on_id is not None or recent.count() > 1:
        return
    try:
        excluded = (
            list(Device.objects.filter(node_id=p.device.node_id).values_list("pk", flat=True))
            if host_short
            else [p.device_id]
        )
        again = placing.placement_load(
            version=p.version, exclude_devices=excluded, requested_by=p.requested_by
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
    if RESIDENTS.stop_loading(p.pk, "unloaded during load"):
        return "stopping its load, which frees what it took and ends the placement"
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
