"""Room on a device, under its lock: the scheduler's decision for a load or for a job's reservation,
and the evictions it calls for. Loads (placing.load) and jobs (job_room) decide by the same rules,
on the same locked rows, so neither can take memory the other was just given.

A job's reservation is a holder in the ledger (apps.serving.ledger): the caller writes it in the
transaction that called `job_room`, while the devices' rows are still locked. Victims of an eviction
keep counting as held until their worker says they are gone (UNLOADING, then UNLOADED), so a job
that made room by evicting waits for `unloads_pending` to clear before its work starts there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from apps.core.domain.errors import Conflict
from apps.fleet.models import Device
from apps.serving.domain import eviction, scheduler
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from apps.serving.placing.devices import device_views
from apps.serving.placing.unload import placement_unload


class PlacementRefused(Conflict):
    """No device can take the version (or the job) now; the message says why, in the scheduler's words.
    `room_on`: where only memory others hold kept it out (scheduler.short_of_room), empty otherwise."""

    code = "placement_refused"

    def __init__(self, message: str, *, room_on: Mapping[int, int] | None = None) -> None:
        super().__init__(message)
        self.room_on: dict[int, int] = dict(room_on or {})


def lock_devices(*, device: Device | None, node: str | None, exclude: Iterable[int]) -> list[Device]:
    """The devices a decision may choose among, locked in id order (no deadlocks between requests
    locking overlapping sets)."""
    return list(_candidates(device=device, node=node, exclude=exclude).select_for_update(of=("self",)))


def _candidates(*, device: Device | None, node: str | None, exclude: Iterable[int]) -> QuerySet[Device]:
    rows = Device.objects.select_related("node").order_by("pk")
    if device is not None:
        rows = rows.filter(pk=device.pk)
    if node:
        rows = rows.filter(node__name=node)
    return rows.exclude(pk__in=list(exclude))


def decide(
    request: scheduler.Request, devices: Sequence[Device], *, now: float, protect: Iterable[int] = ()
) -> tuple[scheduler.Decision | scheduler.Refusal, list[scheduler.DeviceView]]:
    """The scheduler's decision over the locked `devices`, under the configured eviction policy, and
    the views it was made on (`protect`: placements never to evict)."""
    views = device_views(devices, now=now, protect=protect)
    decision = scheduler.decide(
        request,
        views,
        now=now,
        policy=eviction.Policy(settings.MOC_EVICTION_POLICY),
        min_residency_s=settings.MOC_PLACEMENT_MIN_RESIDENCY_S,
    )
    return decision, views


def evict_victims(
    decision: scheduler.Decision,
    views: Sequence[scheduler.DeviceView],
    *,
    reason: str,
    displaced_by: Placement | None = None,
) -> None:
    """Unload the decision's victims, and move its device's eviction clock past them."""
    if not decision.evict:
        return
    view = next(v for v in views if v.id == decision.device_id)
    Device.objects.filter(pk=decision.device_id).update(
        eviction_clock=eviction.clock_after(view.clock, decision.evict)
    )
    for victim in Placement.objects.filter(pk__in=[r.placement_id for r in decision.evict]):
        placement_unload(placement=victim, reason=reason, displaced_by=displaced_by)


@transaction.atomic
def job_room(
    *,
    need_bytes: int,
    now: float,
    device: Device | None = None,
    evict: bool = True,
    exclude: Collection[int] = (),
    label: str = "a job",
    dry_run: bool = False,
) -> scheduler.Decision:
    """Where `need_bytes` for a job fit now (on `device` only, if given; never on `exclude`), by the
    placement rules, with idle unpinned placements evicted where room is needed (unless `evict` is
    False). The victims are unloaded here; the caller writes its reservation in its own transaction,
    in which the devices stay locked. A `dry_run` (a job's create-time check, which the dispatcher
    decides again under the locks) locks nothing and unloads nothing. Raises PlacementRefused with
    the scheduler's reason."""
    if dry_run:
        candidates = list(_candidates(device=device, node=None, exclude=exclude))
    else:
        candidates = lock_devices(device=device, node=None, exclude=exclude)
    request = scheduler.Request(
        version_id=None, need_bytes=need_bytes, device_id=device.pk if device else None
    )
    decision, views = decide(request, candidates, now=now)
    if isinstance(decision, scheduler.Refusal):
        if not candidates and exclude and device is None:
            raise PlacementRefused("the devices it fits on are kept for jobs ahead of it in the queue")
        raise PlacementRefused(decision.reason)
    if decision.evict and not evict:
        raise PlacementRefused("no device has room for it without evicting, which was not allowed")
    if not dry_run:
        evict_victims(decision, views, reason=f"evicted to make room for {label}")
    return decision


def unloads_pending(device_id: int) -> bool:
    """Whether placements are still on their way off the device (their memory not yet returned)."""
    return Placement.objects.filter(device_id=device_id, state=PlacementState.UNLOADING).exists()
