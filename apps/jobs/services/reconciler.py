"""The reconciler: the database is the truth about work, so it finds what the broker or a
worker lost and sends it again, puts it back in its queue, or fails it."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core import outbox
from apps.core import workers as core_workers
from apps.core.transitions import transition
from apps.jobs import messages
from apps.jobs.domain import kinds, reconcile
from apps.jobs.domain.kinds import ErrorClass, LogLevel
from apps.jobs.domain.states import JOB, JOB_ACTIVE, JobState
from apps.jobs.models import Job
from apps.jobs.services.lifecycle import job_dispatch, job_fail, job_log, job_wait

log = logging.getLogger(__name__)


def _snapshot(job: Job) -> reconcile.JobSnapshot:
    return reconcile.JobSnapshot(
        id=job.pk,
        state=job.state,
        queue=job.queue,
        worker=job.worker,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        queued_at=job.queued_at,
        dispatched_at=job.dispatched_at,
        started_at=job.started_at,
    )


def _live_worker(heartbeat: dict[str, Any]) -> reconcile.LiveWorker:
    started = heartbeat.get("started")
    return reconcile.LiveWorker(
        hostname=heartbeat["hostname"],
        queues=frozenset(heartbeat.get("queues", [])),
        started_at=dt.datetime.fromtimestamp(started, tz=dt.UTC) if started else None,
    )


def jobs_redispatch_stale(*, now: dt.datetime) -> dict[str, int]:
    """The reconciler: re-send jobs whose message was lost, recover jobs whose worker was lost."""
    try:
        live = [_live_worker(w) for w in core_workers.live_workers()]
    except redis.RedisError as exc:
        # Without the heartbeats every worker would look dead: better to do nothing.
        log.warning("reconciler skipped: cannot read worker heartbeats from Redis: %s", exc)
        return {}
    redispatch_after = dt.timedelta(seconds=settings.MOC_REDISPATCH_AFTER_S)
    visibility_timeout = dt.timedelta(seconds=settings.MOC_VISIBILITY_TIMEOUT)
    # A queued job whose message still waits in the outbox (the broker was away) was not lost: it
    # goes once the broker is back. One query, so a message sent meanwhile is seen either still
    # waiting or with the dispatched_at its send records before its outbox row goes.
    # A queued job with no task id was never sent: it waits for the dispatcher (its room, its
    # backoff), which sends it; there is no message of it to lose.
    open_jobs = Job.objects.filter(
        Q(state=JobState.QUEUED, dispatched_at__isnull=True, queued_at__lte=now - redispatch_after)
        & ~Q(task_id__in=outbox.waiting_task_ids(messages.JOB_RUN))
        & ~Q(task_id="")
        | Q(state=JobState.QUEUED, dispatched_at__lte=now - visibility_timeout) & ~Q(task_id="")
        | Q(state__in=JOB_ACTIVE)
    )
    snapshots = {job.pk: _snapshot(job) for job in open_jobs}
    decisions = reconcile.decide(
        snapshots.values(),
        live,
        now=now,
        redispatch_after=redispatch_after,
        visibility_timeout=visibility_timeout,
        running_lease=dt.timedelta(seconds=settings.MOC_RUNNING_LEASE_S),
    )
    counts = {action.value: 0 for action in reconcile.Action}
    for decision in decisions:
        if _apply(decision, snapshots[decision.job_id]):
            counts[decision.action.value] += 1
    if decisions:
        log.info("reconciler: %s", counts)
    return counts


@transaction.atomic
def _apply(decision: reconcile.Decision, seen: reconcile.JobSnapshot) -> bool:
    """Carry out one decision, unless the job moved since the reconciler looked at it."""
    job = Job.objects.select_for_update().filter(pk=decision.job_id).first()
    if job is None or _snapshot(job) != seen:
        return False
    if decision.action == reconcile.Action.REDISPATCH:
        job_dispatch(job=job)
        job_log(job_id=job.pk, level=LogLevel.WARNING, message=f"Sent again: {decision.reason}.")
        return True
    if decision.action == reconcile.Action.REQUEUE:
        if job.kind in kinds.DEVICE_KINDS:
            # Its reservation goes with its worker: it waits for the dispatcher to reserve room again,
            # and a fine-tune resumes from its last complete checkpoint when it starts.
            moved = job_wait(job=job, reason=f"queued again, {decision.reason}")
        else:
            moved = transition(job, JobState.QUEUED, machine=JOB, progress=0.0, message="Queued again.")
            if moved:
                job_dispatch(job=job)
        if moved:
            job_log(job_id=job.pk, level=LogLevel.WARNING, message=f"Queued again: {decision.reason}.")
        return moved
    if decision.action == reconcile.Action.CANCEL:
        moved = transition(
            job, JobState.CANCELLED, machine=JOB, finished_at=timezone.now(), message="Cancelled."
        )
        if moved:
            job_log(job_id=job.pk, level=LogLevel.WARNING, message=f"Cancelled: {decision.reason}.")
        return moved
    return job_fail(job=job, error_class=ErrorClass.WORKER_LOST, error=f"Gave up: {decision.reason}.")
