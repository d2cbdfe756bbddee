"""Loading a version: checks, the scheduler's decision under the candidate devices' locks, the
reservation and its victims, adapters bringing their base, and a pinned load refused for room asking
the apps above for it (signals.room_wanted)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Subquery

from apps.fleet.domain.kinds import MemoryKind
from apps.fleet.models import Device
from apps.models.models import ModelVersion
from apps.models.selectors import adapter_base, version_unusable
from apps.serving import messages, services, signals
from apps.serving.domain import scheduler
from apps.serving.domain.states import PlacementState
from apps.serving.domain.tasks import tasks_for
from apps.serving.models import Placement, ServingProfile
from apps.serving.placing.devices import memory_kind_of
from apps.serving.placing.reserve import PlacementRefused, decide, evict_victims, lock_devices
from apps.serving.placing.unload import send_on_commit

P = PlacementState


def profile_for(version: ModelVersion) -> ServingProfile | None:
    return ServingProfile.objects.filter(version=version).first()


def need_bytes(version: ModelVersion, devices: Iterable[Device]) -> dict[int, int]:
    """Per device, what a new placement of `version` reserves there: what its latest load measured
    on a device of the same memory kind (memory_kind_of), else the registry's estimate, else its
    files' size. A figure measured in host memory says nothing of a GPU's, nor one GPU model's of
    another's, so it is never carried across kinds."""
    measured = measured_by_kind(version)
    estimate = estimate_bytes(version)
    return {d.pk: measured.get(memory_kind_of(d), estimate) for d in devices}


def estimate_bytes(version: ModelVersion) -> int:
    """What `version` needs where no load of it was measured: the registry's estimate, else its
    files' size."""
    return int(version.estimated_vram_bytes or version.size_bytes or 1)


def measured_by_kind(version: ModelVersion) -> dict[MemoryKind, int]:
    """What the latest measured load of `version` took, per kind of memory it was measured in: the
    latest per device in one query, their devices in another, so a version's long history of
    placements is never walked."""
    latest_per_device = (
        Placement.objects.filter(version=version, measured_bytes__isnull=False)
        .order_by()
        .values("device")
        .annotate(latest=Max("pk"))
        .values("latest")
    )
    rows = (
        Placement.objects.filter(pk__in=Subquery(latest_per_device))
        .select_related("device__node")
        .order_by(F("loaded_at").asc(nulls_first=True), "pk")
    )
    found: dict[MemoryKind, int] = {}
    for p in rows:  # oldest first: a later load of the same kind replaces its figure
        found[memory_kind_of(p.device)] = int(p.measured_bytes or 0)
    return found


def weights_bytes(version: ModelVersion) -> int:
    """The bytes of the weights the registry read in the version's headers (the files a load reads
    or maps, of the one format its runtime loads), 0 where it has none (never scanned)."""
    weights = (version.vram_estimate or {}).get("weights")
    return weights if isinstance(weights, int) and not isinstance(weights, bool) and weights > 0 else 0


def version_base(version: ModelVersion) -> ModelVersion | None:
    """The version an adapter is built on: its lineage parent, else the registered version at the
    path its adapter_config names. None for versions that stand alone."""
    if version.kind != "adapter":
        return None
    if version.parent_id is not None:
        return version.parent
    return adapter_base(version)


def _check_loadable(version: ModelVersion) -> None:
    if (why := version_unusable(version)) is not None:
        raise ValidationError({"version": why})
    if version.kind != "adapter" and not tasks_for(version.kind, version.format):
        raise ValidationError(
            {"version": f"{version} is a {version.kind or 'model of unknown kind'}, which MOC cannot serve."}
        )


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
    version that cannot be served at all.

    A pinned load (`pinned`, else its serving profile's) that may evict and is refused for room
    asks for it (signals.room_wanted) once its own transaction has rolled back, so what the
    receivers write stays: a running fine-tune may be asked to yield its memory. It is refused
    all the same, with what they did appended; the caller tries again."""
    exclude_devices = list(exclude_devices)
    try:
        return _placement_load(
            version=version,
            device=device,
            node=node,
            pinned=pinned,
            keep_alive_s=keep_alive_s,
            requested_by=requested_by,
            exclude_devices=exclude_devices,
            evict=evict,
            now=now,
        )
    except PlacementRefused as refused:
        if not (refused.room_on and evict and _pins(version, pinned)):
            raise
        notes = _room_wanted(version, refused.room_on)
        if not notes:
            raise
        raise PlacementRefused(" ".join([str(refused), *notes]), room_on=refused.room_on) from refused


def _pins(version: ModelVersion, pinned: bool | None) -> bool:
    """Whether a load asked with `pinned` is a pinned one: as asked, else as its profile says."""
    if pinned is not None:
        return pinned
    profile = profile_for(version)
    return bool(profile and profile.pinned)


def _room_wanted(version: ModelVersion, room_on: dict[int, int]) -> list[str]:
    """Ask the apps above for room for a pinned load of `version`; the sentences they answer."""
    answers = signals.room_wanted.send(
        sender=Placement, need_on=dict(room_on), wanted_by=f"a pinned load of {version}"
    )
    return [answer for _, answer in answers if answer]


@transaction.atomic
def _placement_load(
    *,
    version: ModelVersion,
    device: Device | None,
    node: str | None,
    pinned: bool | None,
    keep_alive_s: int | None,
    requested_by: Any,
    exclude_devices: Iterable[int],
    evict: bool,
    now: float | None,
) -> Placement:
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
        base_placement = _placement_load(
            version=base,
            device=device,
            node=node,
            pinned=None,
            keep_alive_s=None,
            requested_by=requested_by,
            exclude_devices=exclude_devices,
            evict=evict,
            now=None,
        )
        device = base_placement.device
    candidates = lock_devices(device=device, node=node, exclude=exclude_devices)
    # Again under the lock: a concurrent request for the same version may have placed it meanwhile.
    existing = _active(version, device=device, node=node, exclude=exclude_devices)
    if existing is not None:
        return existing
    if device is not None and _active(version, device=device, node=None, exclude=(), unloading=True):
        raise PlacementRefused(f"{version} is being unloaded from {device}; load it again once it is gone.")
    # An adapter's base is in use by the adapter about to load on it: never its victim.
    protect = {base_placement.pk} if base_placement else set()
    request = scheduler.Request(
        version_id=version.pk,
        need_bytes=estimate_bytes(version),
        device_id=device.pk if device else None,
        node=node or None,
        need_on=need_bytes(version, candidates),
    )
    decision, views = decide(request, candidates, now=now, protect=protect)
    if isinstance(decision, scheduler.Refusal):
        raise PlacementRefused(
            f"{version} cannot be placed: {decision.reason}.",
            room_on=scheduler.short_of_room(request, views),
        )
    if decision.evict and not evict:
        raise PlacementRefused(f"{version} cannot be placed without evicting, which was not allowed.")
    chosen = next(d for d in candidates if d.pk == decision.device_id)
    placement = services.placement_request(
        version=version,
        device=chosen,
        reserved_bytes=request.need(chosen.pk),
        pinned=profile.pinned if pinned is None and profile else bool(pinned),
        keep_alive_s=keep_alive_s
        or (profile and profile.keep_alive_s)
        or settings.MOC_PLACEMENT_KEEP_ALIVE_S,
        depends_on=base_placement,
        requested_by=requested_by,
    )
    evict_victims(decision, views, reason=f"evicted to make room for {version}", displaced_by=placement)
    send_on_commit(messages.PLACEMENT_LOAD, placement)
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


def profile_timeout_s(version: ModelVersion) -> float:
    """A request's time limit for `version`: its serving profile's, else the default."""
    profile = profile_for(version)
    return (profile and profile.request_timeout_s) or settings.MOC_SERVING_TIMEOUT_S
