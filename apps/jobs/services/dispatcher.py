"""The dispatcher: waiting jobs get their device memory reserved in serving's ledger, by the
placement rules and under the same device locks, and only then are sent to that device's queue.

Run by beat every MOC_JOB_DISPATCH_S, and kicked (lifecycle.dispatcher_kick) when a job is created,
ends, yields or goes back to the queue. A round is safe to run twice at once: each job is taken
under its row lock and re-checked, and each reservation is decided under the devices' locks.

A job pinned to a device (`pinned_device`, what the operator asked) is placed there only, every
time it waits again; `device` is where it was placed last.

The order, backfill and preemption rules are in domain.queueing; `preempt_for` asks a fine-tune to
yield for a waiting job here, and for a pinned serving load refused for room (jobs.receivers).

A reservation that had to evict idle models holds its room at once, but the job is sent only when
the evicted models are gone (their memory still counts as held until their worker says so), as a
placement would load.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.core.domain.units import format_bytes
from apps.fleet.models import Device
from apps.jobs.domain import kinds, queueing
from apps.jobs.domain import params as job_params
from apps.jobs.domain.kinds import JobKind, LogLevel
from apps.jobs.domain.states import JobState
from apps.jobs.holdings import holding_jobs
from apps.jobs.models import Job
from apps.jobs.services.facts import need_bytes
from apps.jobs.services.lifecycle import job_dispatch, job_log
from apps.jobs.services.load_holds import load_holds
from apps.serving import placing
from apps.serving.domain import scheduler
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.models import Placement

log = logging.getLogger(__name__)


def jobs_dispatch(*, now: dt.datetime) -> int:
    """One dispatch round; how many jobs it sent to a worker."""
    sent = _send_reserved()
    waiting = list(
        Job.objects.filter(state=JobState.QUEUED, task_id="", reserved_bytes=0).select_related(
            "model_version__parent"
        )
    )
    if not waiting:
        return sent
    jobs = {job.pk: job for job in waiting}
    devices = {d.pk: d for d in Device.objects.select_related("node")}
    reach = _reach(devices.values())
    this_round = _Round(devices=devices, holding=_holding(), holds=load_holds(devices.keys()))
    blocked: list[queueing.Waiting] = []
    for entry in queueing.order((_waiting(job) for job in waiting), now=now):
        job = jobs[entry.id]
        if entry.need_bytes == 0:
            sent += _send(job)
            continue
        barred = this_round.barred(job.kind, entry, kept=queueing.kept_for(blocked, reach))
        refusal = _reserve(job, entry, barred=barred, this_round=this_round)
        if refusal is None:
            sent += _send_if_room_is_free(job.pk)
            continue
        never = not queueing.usable_devices(entry, reach)
        if never:
            refusal += "; no device could ever hold it beside the pinned models there, so none is kept for it"
        _note_waiting(job, f"Waiting for room: {refusal}.")
        if never:
            continue  # keeping devices for it would stop the queue behind it for nothing
        if not blocked and settings.MOC_JOB_PREEMPT:
            preempt_for(entry, wanted_by=f"{job} (priority {job.priority})")
        blocked.append(entry)
    return sent


def _reach(devices: Iterable[Device]) -> dict[int, int]:
    """Per device, the most room it could ever give one job: its capacity less what pinned
    placements hold (nothing the dispatcher does unloads them; every other holding ends or may be
    evicted)."""
    pinned = dict(
        Placement.objects.filter(state__in=PLACEMENT_ACTIVE, pinned=True)
        .values("device_id")
        .annotate(held=Sum(Coalesce("measured_bytes", "reserved_bytes")))
        .values_list("device_id", "held")
    )
    return {d.pk: d.capacity_bytes - (pinned.get(d.pk) or 0) for d in devices}


def _holding() -> dict[int, set[str]]:
    """Per device, the kinds of the jobs that run or hold a reservation there."""
    holding: dict[int, set[str]] = {}
    for device_id, kind in holding_jobs().values_list("device_id", "kind"):
        holding.setdefault(device_id, set()).add(kind)
    return holding


@dataclass
class _Round:
    """What one dispatch round knows of the devices beyond the ledger: the jobs on each (a benchmark
    runs alone; kept up to date as the round reserves) and the room held for pinned serving loads."""

    devices: dict[int, Device]
    holding: dict[int, set[str]]
    holds: dict[int, tuple[int, float]]  # device id -> (bytes, seconds left): services.load_holds

    def barred(self, kind: str, entry: queueing.Waiting, *, kept: dict[int, int]) -> dict[int, str]:
        """The devices this job may not go to now, each with why."""
        barred = {pk: f"is kept for job #{ahead}, ahead of it in the queue" for pk, ahead in kept.items()}
        for pk, why in queueing.sharing_refused(kind, self.holding).items():
            barred.setdefault(pk, why)
        for pk, (held, left_s) in self.holds.items():
            if pk not in barred and pk in self.devices and self._free(pk) - held < entry.need(pk):
                barred[pk] = (
                    f"has {format_bytes(held)} held for a pinned serving load for {left_s:.0f} s more"
                )
        return barred

    def _free(self, device_id: int) -> int:
        """What the device has free now (read without its lock: a hold only steers jobs elsewhere;
        the reservation itself is decided under the lock)."""
        (view,) = placing.device_views([self.devices[device_id]], now=time.time())
        return scheduler.free_bytes(view)

    def label(self, device_id: int) -> str:
        device = self.devices.get(device_id)
        return str(device) if device is not None else f"device {device_id}"

    def reserved(self, device_id: int, kind: str) -> None:
        self.holding.setdefault(device_id, set()).add(kind)


def _waiting(job: Job) -> queueing.Waiting:
    need = 0
    if job.kind in kinds.DEVICE_KINDS:
        parsed = job_params.from_stored(job.kind, job.params)
        need = max(1, need_bytes(job.kind, parsed, job.model_version, adjustments=job.adjustments))
    return queueing.Waiting(
        id=job.pk,
        priority=job.priority,
        queued_at=job.queued_at,
        not_before=job.not_before,
        need_bytes=need,
        device_id=job.pinned_device_id,
    )


@transaction.atomic
def _send(job: Job) -> int:
    """Send a job that needs no device memory (a retry of a self-test, of a conversion)."""
    locked = Job.objects.select_for_update().filter(pk=job.pk, state=JobState.QUEUED, task_id="").first()
    if locked is None:
        return 0
    job_dispatch(job=locked)
    return 1


@transaction.atomic
def _reserve(job: Job, entry: queueing.Waiting, *, barred: dict[int, str], this_round: _Round) -> str | None:
    """Reserve the job's memory on a device it is not `barred` from; None when it did (or the job
    moved on meanwhile), else why it waits."""
    locked = (
        # of=self: PostgreSQL refuses to lock the nullable side of the pinned device's outer join.
        Job.objects.select_for_update(of=("self",))
        .filter(pk=job.pk, state=JobState.QUEUED, task_id="", reserved_bytes=0)
        .select_related("pinned_device")
        .first()
    )
    if locked is None:
        return None
    pinned = locked.pinned_device
    if pinned is not None and pinned.pk in barred:
        return f"{pinned} {barred[pinned.pk]}"
    try:
        with transaction.atomic():  # a clash found under the device's lock undoes the evictions too
            decision = placing.job_room(
                need_bytes=entry.need_bytes,
                device=pinned,
                exclude=set(barred) if pinned is None else (),
                now=time.time(),
                label=str(locked),
            )
            _check_alone(locked.kind, decision.device_id)
    except _Shared as shared:
        return f"{this_round.label(shared.device_id)} {shared.why}"
    except placing.PlacementRefused as refused:
        if pinned is not None or not barred:
            return str(refused)
        why = "; ".join(f"{this_round.label(pk)} {text}" for pk, text in sorted(barred.items()))
        if barred.keys() >= this_round.devices.keys():
            return why
        return f"{refused}; not tried: {why}"
    device = Device.objects.select_related("node").get(pk=decision.device_id)
    evicting = len(decision.evict)
    message = (
        f"Reserved {format_bytes(entry.need_bytes)} on {device}; waiting for {evicting} idle "
        f"model{'s' if evicting != 1 else ''} to be unloaded."
        if evicting
        else f"Reserved {format_bytes(entry.need_bytes)} on {device}."
    )
    Job.objects.filter(pk=locked.pk).update(
        device=device, reserved_bytes=entry.need_bytes, queue=device.queue, message=message[:300]
    )
    job_log(job_id=locked.pk, message=message)
    this_round.reserved(device.pk, locked.kind)
    return None


class _Shared(Exception):
    """The device chosen for a job runs what the benchmark rule keeps it from sharing with."""

    def __init__(self, device_id: int, why: str) -> None:
        super().__init__(why)
        self.device_id, self.why = device_id, why


def _check_alone(kind: str, device_id: int) -> None:
    """Raise _Shared when the benchmark rule forbids the job on the device, as read now under the
    device's lock (another round may have reserved there since this round looked)."""
    there = set(holding_jobs().filter(device_id=device_id).values_list("kind", flat=True))
    if why := queueing.sharing_refused(kind, {device_id: there}).get(device_id):
        raise _Shared(device_id, why)


def _send_reserved() -> int:
    """Send the jobs whose room is reserved and no longer taken by models on their way out."""
    reserved = Job.objects.filter(
        state=JobState.QUEUED, task_id="", reserved_bytes__gt=0, device__isnull=False
    )
    return sum(_send_if_room_is_free(pk) for pk in reserved.values_list("pk", flat=True))


@transaction.atomic
def _send_if_room_is_free(job_id: int) -> int:
    job = (
        Job.objects.select_for_update()
        .filter(pk=job_id, state=JobState.QUEUED, task_id="", reserved_bytes__gt=0, device__isnull=False)
        .first()
    )
    if job is None or placing.unloads_pending(job.device_id):
        return 0
    job_dispatch(job=job)
    job_log(job_id=job.pk, message=f"Sent to {job.queue}.")
    return 1


def _note_waiting(job: Job, message: str) -> None:
    Job.objects.filter(pk=job.pk, state=JobState.QUEUED, task_id="").exclude(message=message[:300]).update(
        message=message[:300], updated_at=timezone.now()
    )


@dataclass(frozen=True, slots=True)
class Preemption:
    """What `preempt_for` did: the fine-tune it asked to yield, if any, and those in its scope that
    were already yielding (asked earlier) whose room would be enough for the want."""

    asked: int | None
    yielding: tuple[int, ...]
    devices: tuple[int, ...] = ()  # where the fine-tunes asked or yielding are: where room comes free


@transaction.atomic
def preempt_for(
    want: queueing.Waiting,
    *,
    wanted_by: str,
    devices: Collection[int] | None = None,
    hold_s: float = 0.0,
) -> Preemption:
    """Ask a running lower-priority fine-tune to checkpoint and yield its device for `want`
    (domain.queueing's rule), when one would make room: among those on `devices` only, when given.
    `wanted_by` names what wants the room in the fine-tune's log. With `hold_s`, the fine-tune
    stays out of the queue that long once it yields (lifecycle.job_yield), as nothing in the queue
    holds the room for what wanted it."""
    rows = Job.objects.select_for_update().filter(
        state=JobState.RUNNING, device__isnull=False, reserved_bytes__gt=0
    )
    if devices is not None:
        rows = rows.filter(device_id__in=list(devices))
    running = [
        queueing.Running(
            id=r.pk,
            priority=r.priority,
            device_id=r.device_id,
            reserved_bytes=r.reserved_bytes,
            started_at=r.started_at,
            preemptible=r.kind == JobKind.FINE_TUNE,
            yielding=r.preempt_requested_at is not None,
        )
        for r in rows
    ]
    free = {pk: placing.device_room(pk, now=time.time()) for pk in {r.device_id for r in running}}
    yielding_now = [
        r for r in running if r.yielding and free[r.device_id] + r.reserved_bytes >= want.need(r.device_id)
    ]
    yielding = tuple(r.id for r in yielding_now)
    victim = queueing.preemption_victim(want, running, free)
    if victim is None:
        return Preemption(asked=None, yielding=yielding, devices=_devices_of(yielding_now))
    now = timezone.now()
    hold = {"not_before": now + dt.timedelta(seconds=hold_s)} if hold_s > 0 else {}
    asked = Job.objects.filter(
        pk=victim.id, state=JobState.RUNNING, preempt_requested_at__isnull=True
    ).update(preempt_requested_at=now, **hold)
    if not asked:
        return Preemption(asked=None, yielding=yielding, devices=_devices_of(yielding_now))
    job_log(
        job_id=victim.id,
        level=LogLevel.WARNING,
        message=f"Asked to checkpoint and yield its device to {wanted_by}.",
    )
    log.info("job #%s asked to yield its device to %s", victim.id, wanted_by)
    return Preemption(asked=victim.id, yielding=yielding, devices=_devices_of([*yielding_now, victim]))


def _devices_of(running: Iterable[queueing.Running]) -> tuple[int, ...]:
    return tuple(sorted({r.device_id for r in running}))
