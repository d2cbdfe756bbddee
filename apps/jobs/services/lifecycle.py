"""A job's life: create and dispatch, start, report progress, finish, cancel, poison.

Every state change goes through `transition()` (a conditional UPDATE), so a task delivered
twice, a late cancel or a reconciler racing a worker can never move a job twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from apps.core import audit, dispatch
from apps.core import workers as core_workers
from apps.core.domain.queues import Queue
from apps.core.domain.units import format_bytes
from apps.core.transitions import transition
from apps.jobs import messages, runners
from apps.jobs.domain import kinds
from apps.jobs.domain.kinds import ErrorClass, JobKind, LogLevel
from apps.jobs.domain.states import JOB, JOB_ACTIVE, JobState
from apps.jobs.models import Job, JobEvent
from apps.serving import placing

log = logging.getLogger(__name__)


def job_log(
    *, job_id: int, message: str, level: str = LogLevel.INFO, data: dict[str, Any] | None = None
) -> JobEvent:
    """Append one line to a job's log."""
    return JobEvent.objects.create(job_id=job_id, level=level, message=message[:1000], data=data or {})


def job_dispatch(*, job: Job) -> None:
    """Send the job's task message to its queue once the transaction commits (through the outbox:
    if the broker is down then, it goes as soon as the broker is back).

    `dispatched_at` is set once the broker took the message (`job_message_sent`); a message lost
    by the broker itself leaves the job queued past the visibility timeout, and the reconciler
    sends it again.
    """
    task_id = str(uuid.uuid4())
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(queued_at=now, dispatched_at=None, task_id=task_id)
    job.queued_at, job.dispatched_at, job.task_id = now, None, task_id
    dispatch.send_on_commit(
        messages.JOB_RUN,
        args=[job.pk],
        queue=job.queue,
        task_id=task_id,
        priority=kinds.broker_priority(job.priority),
    )


@receiver(dispatch.message_sent, dispatch_uid="moc-job-dispatched")
def job_message_sent(sender: Any, *, name: str, task_id: str, args: list[Any], **kwargs: Any) -> None:
    """The broker took a job's message: record when. Only this send's own task id, as a later
    dispatch of the job has not reached the broker yet."""
    if name == messages.JOB_RUN:
        Job.objects.filter(pk=args[0], task_id=task_id).update(dispatched_at=timezone.now())


def _unconsumed_queue_problem(queue: str) -> str | None:
    """Why no worker would ever take a job sent to `queue`; None when Redis cannot tell."""
    if queue == Queue.DEFAULT:
        return None
    try:
        live = core_workers.live_queues()
    except redis.RedisError as exc:
        # A monitoring hiccup must not stop work from being queued: accept it unchecked.
        log.warning("cannot read worker heartbeats, queue '%s' accepted unchecked: %s", queue, exc)
        return None
    return kinds.queue_consumer_problem(queue, live)


@transaction.atomic
def job_create(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    queue: str = Queue.DEFAULT,
    priority: int = kinds.PRIORITY_DEFAULT,
    max_attempts: int = 3,
    model_version: Any = None,
    device: Any = None,
    reserved_bytes: int = 0,
    created_by: Any = None,
) -> Job:
    """Queue a job and dispatch it on commit. Refuses kinds no worker can run yet.

    `reserved_bytes` of its device's memory count as taken while it runs: the placement
    scheduler leaves them free."""
    params = {} if params is None else params
    problems: dict[str, list[str]] = {}
    if kind not in {k.value for k in JobKind}:
        problems["kind"] = [f"Unknown kind '{kind}'; choose from {[k.value for k in JobKind]}."]
    elif not runners.has_runner(kind):
        problems["kind"] = [f"MOC has no runner for kind {kind} yet, so such a job could never run."]
    if queue_problem := kinds.queue_problem(queue) or _unconsumed_queue_problem(queue):
        problems["queue"] = [queue_problem]
    if params_problems := kinds.params_problems(kind, params):
        problems["params"] = [f"{name}: {text}" if name else text for name, text in params_problems.items()]
    if not kinds.PRIORITY_MIN <= priority <= kinds.PRIORITY_MAX:
        problems["priority"] = [f"Between {kinds.PRIORITY_MIN} and {kinds.PRIORITY_MAX}; higher runs first."]
    if not 1 <= max_attempts <= kinds.MAX_ATTEMPTS_LIMIT:
        problems["max_attempts"] = [f"Between 1 and {kinds.MAX_ATTEMPTS_LIMIT}."]
    if reserved_bytes < 0:
        problems["reserved_bytes"] = ["Must be 0 or more."]
    elif reserved_bytes and device is None:
        problems["reserved_bytes"] = ["Memory is reserved on a device: give the device too."]
    elif reserved_bytes and (room := placing.device_room(device.pk, now=time.time())) < reserved_bytes:
        problems["reserved_bytes"] = [
            f"{device} has {format_bytes(room)} free for it now, not {format_bytes(reserved_bytes)}."
        ]
    if problems:
        raise ValidationError(problems)
    job = Job.objects.create(
        kind=kind,
        params=params,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        model_version=model_version,
        device=device,
        reserved_bytes=reserved_bytes,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )
    job_dispatch(job=job)
    return job


@transaction.atomic
def job_cancel(*, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (it becomes CANCELLING)."""
    current = Job.objects.select_for_update().get(pk=job.pk)
    old = current.state
    if old == JobState.CANCELLING:
        return current
    dst = JobState.CANCELLING if old == JobState.RUNNING else JobState.CANCELLED
    changes = {"finished_at": timezone.now()} if dst == JobState.CANCELLED else {}
    transition(current, dst, machine=JOB, **changes)
    audit.record("cancel", current, changes={"state": [old, dst.value]})
    return current


def job_start(*, job_id: int, worker: str, task_id: str) -> bool:
    """Take a queued job for this task; False when another task has it or it is over.

    A RUNNING job whose task id is this task's is a message the broker delivered again
    because the worker running it died: this delivery takes the job over, as a new attempt.
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return False
    now = timezone.now()
    if job.state == JobState.QUEUED:
        moved = transition(
            job,
            JobState.RUNNING,
            machine=JOB,
            worker=worker,
            task_id=task_id,
            started_at=now,
            attempts=F("attempts") + 1,
            progress=0.0,
            message="",
        )
        if moved:
            job.refresh_from_db(fields=["attempts"])
            job_log(
                job_id=job.pk, message=f"Started on {worker} (attempt {job.attempts} of {job.max_attempts})."
            )
        return moved
    if job.state == JobState.RUNNING and task_id and job.task_id == task_id:
        return _take_over(job, worker=worker, now=now)
    if job.state == JobState.CANCELLING and task_id and job.task_id == task_id:
        # The run it was asked to stop died with its worker: the cancel is complete.
        job_finish(job_id=job.pk, task_id=task_id, state=JobState.CANCELLED)
    return False


@transaction.atomic
def _take_over(job: Job, *, worker: str, now: dt.datetime) -> bool:
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.state != JobState.RUNNING:
        return False
    lost = f"its worker {job.worker} died running it"
    if job.attempts >= job.max_attempts:
        job_fail(
            job=job,
            error_class=ErrorClass.WORKER_LOST,
            error=f"Gave up: {lost} during attempt {job.attempts} of {job.max_attempts}.",
        )
        return False
    Job.objects.filter(pk=job.pk).update(
        worker=worker, started_at=now, attempts=F("attempts") + 1, progress=0.0, updated_at=now
    )
    job.refresh_from_db()
    job_log(
        job_id=job.pk,
        level=LogLevel.WARNING,
        message=f"Restarted on {worker} after {lost} (attempt {job.attempts} of {job.max_attempts}).",
    )
    return True


def job_progress(*, job_id: int, task_id: str, progress: float, message: str = "") -> bool:
    """Record a runner's progress; False when the job is no longer running under this task."""
    changes: dict[str, Any] = {"progress": progress, "updated_at": timezone.now()}
    if message:
        changes["message"] = message[:300]
    return Job.objects.filter(pk=job_id, task_id=task_id, state=JobState.RUNNING).update(**changes) == 1


def job_fail(*, job: Job, error_class: str, error: str, **changes: Any) -> bool:
    """Move a running job to FAILED with its error class; False if it already moved on."""
    changes.setdefault("finished_at", timezone.now())
    moved = transition(
        job,
        JobState.FAILED,
        machine=JOB,
        error_class=error_class,
        error=error,
        message=error[:300],
        **changes,
    )
    if moved:
        job_log(job_id=job.pk, level=LogLevel.ERROR, message=f"Failed ({error_class}): {error}")
    return moved


@transaction.atomic
def job_finish(
    *,
    job_id: int,
    task_id: str,
    state: JobState,
    result: dict[str, Any] | None = None,
    error_class: str = "",
    error: str = "",
) -> bool:
    """End a job the calling task runs; False when the job is no longer this task's."""
    job = _own_active_job(job_id, task_id)
    if job is None:
        return False
    changes: dict[str, Any] = {"finished_at": timezone.now(), "result": result or {}}
    if state == JobState.FAILED:
        return job_fail(job=job, error_class=error_class or ErrorClass.RUNNER_ERROR, error=error, **changes)
    if state == JobState.SUCCEEDED:
        changes.update(progress=1.0, message="Succeeded.")
    else:
        changes["message"] = "Cancelled."
    moved = transition(job, state, machine=JOB, **changes)
    if moved:
        job_log(job_id=job.pk, message=changes["message"])
    return moved


def job_stopped(*, job_id: int, task_id: str) -> bool:
    """A runner stopped at a report: finish the cancel it was asked for, if this task still owns the job."""
    return Job.objects.filter(pk=job_id, task_id=task_id, state=JobState.CANCELLING).exists() and job_finish(
        job_id=job_id, task_id=task_id, state=JobState.CANCELLED
    )


def _own_active_job(job_id: int, task_id: str) -> Job | None:
    """The job, locked, if it is still running (or cancelling) under this task."""
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.state not in JOB_ACTIVE or job.task_id != task_id:
        return None
    return job


@transaction.atomic
def job_poisoned(*, job_id: int, task_id: str) -> bool:
    """Fail the job whose task message kept killing its workers."""
    job = _own_active_job(job_id, task_id)
    if job is None:
        return False
    return job_fail(
        job=job,
        error_class=ErrorClass.POISONED,
        error=f"Its task message killed the worker {settings.MOC_TASK_MAX_DELIVERIES} times or more; "
        "it is not run again. Check the worker's logs (out of memory? a crash in native code?).",
    )


@transaction.atomic
def job_crashed(*, job_id: int, task_id: str, worker: str, error: str) -> bool:
    """Fail the job this task and worker started when MOC's own code raised while running it.

    The last resort of a job's task: a job left RUNNING on a live worker is never picked up
    by the reconciler, so without this it would stay RUNNING forever.
    """
    job = _own_active_job(job_id, task_id)
    if job is None or job.worker != worker:
        return False
    return job_fail(job=job, error_class=ErrorClass.INTERNAL, error=f"MOC failed while running it: {error}")
