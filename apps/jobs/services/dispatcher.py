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
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.domain.units import format_bytes
from apps.fleet.models import Device
from apps.jobs.domain import kinds, queueing
from apps.jobs.domain import params as job_params
from apps.jobs.domain.kinds import JobKind, LogLevel
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.services.facts import need_bytes
from apps.jobs.services.lifecycle import job_dispatch, job_log
from apps.serving import placing

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
    capacities = dict(Device.objects.values_list("pk", "capacity_bytes"))
    blocked: list[queueing.Waiting] = []
    for entry in queueing.order((_waiting(job) for job in waiting), now=now):
        job = jobs[entry.id]
        if entry.need_bytes == 0:
            sent += _send(job)
            continue
        refusal = _reserve(job, entry, kept=queueing.kept_for(blocked, capacities))
        if refusal is None:
            sent += _send_if_room_is_free(job.pk)
            continue
        _note_waiting(job, f"Waiting for room: {refusal}.")
        if not blocked and settings.MOC_JOB_PREEMPT:
            preempt_for(entry, wanted_by=f"{job} (priority {job.priority})")
        blocked.append(entry)
    return sent


def _waiting(job: Job) -> queueing.Waiting:
    need = 0
    if job.kind in kinds.DEVICE_KINDS:
        need = max(1, need_bytes(job.kind, job_params.from_stored(job.kind, job.params), job.model_version))
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
def _reserve(job: Job, entry: queueing.Waiting, *, kept: dict[int, int]) -> str | None:
    """Reserve the job's memory on a device; None when it did, else why it waits."""
    locked = (
        Job.objects.select_for_update()
        .filter(pk=job.pk, state=JobState.QUEUED, task_id="", reserved_bytes=0)
        .select_related("pinned_device")
        .first()
    )
    if locked is None:
        return None
    pinned = locked.pinned_device
    if pinned is not None and pinned.pk in kept:
        return f"{pinned} is kept for job #{kept[pinned.pk]}, ahead of it in the queue"
    try:
        decision = placing.job_room(
            need_bytes=entry.need_bytes,
            device=pinned,
            exclude=set(kept) if pinned is None else (),
            now=time.time(),
            label=str(locked),
        )
    except placing.PlacementRefused as refused:
        return str(refused)
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
    return None


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
    yielding = tuple(
        r.id for r in running if r.yielding and free[r.device_id] + r.reserved_bytes >= want.need(r.device_id)
    )
    victim = queueing.preemption_victim(want, running, free)
    if victim is None:
        return Preemption(asked=None, yielding=yielding)
    now = timezone.now()
    hold = {"not_before": now + dt.timedelta(seconds=hold_s)} if hold_s > 0 else {}
    asked = Job.objects.filter(
        pk=victim.id, state=JobState.RUNNING, preempt_requested_at__isnull=True
    ).update(preempt_requested_at=now, **hold)
    if not asked:
        return Preemption(asked=None, yielding=yielding)
    job_log(
        job_id=victim.id,
        level=LogLevel.WARNING,
        message=f"Asked to checkpoint and yield its device to {wanted_by}.",
    )
    log.info("job #%s asked to yield its device to %s", victim.id, wanted_by)
    return Preemption(asked=victim.id, yielding=yielding)
