"""A job's life after it is created: dispatch, start, report progress, finish (or go back to
waiting: an automatic retry, a yield, a lost worker), cancel, poison.

Every state change goes through `transition()` (a conditional UPDATE), so a task delivered
twice, a late cancel or a reconciler racing a worker can never move a job twice.

Waiting. A job of a device kind (kinds.DEVICE_KINDS) is not sent to a queue when it is created:
it waits (QUEUED, no task id) for the dispatcher (services.dispatcher), which reserves its device
memory in serving's ledger and only then sends it to that device's queue. Any job put back in the
queue (retried after a transient failure, yielded, or its worker lost) waits the same way, so the
dispatcher is also what sends a retry once its backoff (`not_before`) is over.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from apps.core import audit, dispatch
from apps.core.domain.queues import Queue
from apps.core.transitions import transition
from apps.jobs import messages
from apps.jobs.domain import kinds
from apps.jobs.domain.kinds import ErrorClass, JobKind, LogLevel
from apps.jobs.domain.states import JOB, JOB_ACTIVE, JobState
from apps.jobs.models import Job, JobEvent
from apps.jobs.services.load_holds import load_hold_renew

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


def dispatcher_kick() -> None:
    """Ask a default worker for a dispatch round once the transaction commits (beat runs one every
    MOC_JOB_DISPATCH_S anyway: a kick lost with the broker only waits for that)."""
    dispatch.send_on_commit(
        messages.JOBS_DISPATCH, queue=Queue.DEFAULT, expires=max(60.0, 10 * settings.MOC_JOB_DISPATCH_S)
    )


def holds_memory(job: Job) -> bool:
    return job.kind in kinds.DEVICE_KINDS and job.reserved_bytes > 0


@transaction.atomic
def job_cancel(*, job: Job, save: bool = False) -> Job:
    """Cancel a queued job at once (its reservation let go); ask a running one to stop at its next
    report (it becomes CANCELLING), a fine-tune with `save` writing a checkpoint first (also when
    `save` comes with a second cancel, while it is already CANCELLING)."""
    current = Job.objects.select_for_update().get(pk=job.pk)
    old = current.state
    if save and current.kind != JobKind.FINE_TUNE:
        raise ValidationError(
            {"save": f"Only a fine-tune writes a checkpoint; this job is a {current.kind}."}
        )
    if old == JobState.CANCELLING:
        if save and not current.stop_save:
            # A second cancel that asks for the save the first did not: the runner reads it at its
            # next stop check (Report.stop_asked), as it would have from the first.
            Job.objects.filter(pk=current.pk, state=JobState.CANCELLING).update(
                stop_save=True, updated_at=timezone.now()
            )
            current.stop_save = True
            audit.record("cancel", current, changes={"save": True})
            job_log(
                job_id=current.pk,
                message="Cancel asked again with a save: it writes a checkpoint, then stops.",
            )
        return current
    dst = JobState.CANCELLING if old == JobState.RUNNING else JobState.CANCELLED
    held = holds_memory(current)
    changes: dict[str, Any] = (
        {"finished_at": timezone.now(), "message": "Cancelled."}
        if dst == JobState.CANCELLED
        else {"stop_save": save}
    )
    transition(current, dst, machine=JOB, **changes)
    audited = {"state": [old, dst.value]} | ({"save": True} if save and dst == JobState.CANCELLING else {})
    audit.record("cancel", current, changes=audited)
    if dst == JobState.CANCELLING and save:
        job_log(job_id=current.pk, message="Cancel asked: it writes a checkpoint, then stops.")
    if held and dst == JobState.CANCELLED:
        dispatcher_kick()
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
    # A job that waits for the dispatcher runs only from the message the dispatcher sent, after it
    # reserved its memory: a stale copy of an earlier message must not start it anywhere.
    sent_for_now = job.kind not in kinds.DEVICE_KINDS or (bool(task_id) and job.task_id == task_id)
    if job.state == JobState.QUEUED and sent_for_now:
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
    if holds_memory(job):
        dispatcher_kick()  # its memory is free once this commits
    error_class = error_class or ErrorClass.RUNNER_ERROR
    if state == JobState.FAILED and job.state == JobState.RUNNING and _retried(job, error_class, error):
        return True
    changes: dict[str, Any] = {"finished_at": timezone.now(), "result": result or {}}
    if state == JobState.FAILED:
        return job_fail(job=job, error_class=error_class, error=error, **changes)
    if state == JobState.SUCCEEDED:
        changes.update(progress=1.0, message="Succeeded.")
    else:
        changes["message"] = "Cancelled."
    moved = transition(job, state, machine=JOB, **changes)
    if moved:
        job_log(job_id=job.pk, message=changes["message"])
    return moved


def retries_by_itself(error_class: str) -> bool:
    """Whether a failure of this class is worth another attempt of its own: the transient classes
    (kinds.TRANSIENT). Out of memory is final here: a fine-tune's runner already retried it at
    smaller batches, and any other kind would run out again with the same parameters."""
    return error_class in kinds.TRANSIENT


def _retried(job: Job, error_class: str, error: str) -> bool:
    """Put a job whose run failed transiently back in the queue, after its backoff, while it has
    attempts left (`job` is locked). False: it fails."""
    if not retries_by_itself(error_class) or job.attempts >= job.max_attempts:
        return False
    delay = kinds.retry_delay_s(job.attempts, base_s=settings.MOC_JOB_RETRY_BACKOFF_S)
    retry_at = timezone.now() + dt.timedelta(seconds=delay)
    why = f"Attempt {job.attempts} of {job.max_attempts} failed ({error_class}): {error}"
    if not job_wait(job=job, reason=f"retried in {delay:g} s", not_before=retry_at):
        return False
    job_log(job_id=job.pk, level=LogLevel.WARNING, message=f"{why} Retried in {delay:g} s.")
    return True


def job_wait(*, job: Job, reason: str, **changes: Any) -> bool:
    """Put a running job back in the queue to wait for the dispatcher: its reservation, device and
    task let go (a lost worker, a yield, an automatic retry), its pinned device kept. False if it
    already moved on."""
    moved = transition(
        job,
        JobState.QUEUED,
        machine=JOB,
        device=None,
        reserved_bytes=0,
        task_id="",
        worker="",
        dispatched_at=None,
        queued_at=timezone.now(),
        preempt_requested_at=None,
        stop_save=False,
        message=f"Waiting: {reason}."[:300],
        **changes,
    )
    if moved:
        dispatcher_kick()
    return moved


@transaction.atomic
def job_yield(*, job_id: int, task_id: str, reason: str) -> bool:
    """The runner of this task stopped to give its device back (`preempt`, or its worker's
    `shutdown`) after writing a checkpoint: the job waits again and resumes from it. A yield is not
    a failed attempt, so it gives its attempt back. A hold the preemption asked for (`not_before`
    set past `preempt_requested_at`: it yielded to a pinned serving load) starts now, as it yields,
    and so does the room held for that load on its device (services.load_holds).
    False when the job is not running under this task (a cancel that came meanwhile wins: the
    caller finishes it)."""
    job = Job.objects.select_for_update().filter(pk=job_id, task_id=task_id, state=JobState.RUNNING).first()
    if job is None:
        return False
    step = job.step
    changes: dict[str, Any] = {"attempts": F("attempts") - 1}
    asked_at, hold_until = job.preempt_requested_at, job.not_before
    if asked_at is not None and hold_until is not None and hold_until > asked_at:
        changes["not_before"] = timezone.now() + (hold_until - asked_at)
        # The room held on its device for the load starts over too, once the yield is committed.
        held_on, hold_s = job.device_id, (hold_until - asked_at).total_seconds()
        if held_on is not None:
            transaction.on_commit(lambda: load_hold_renew(device_id=held_on, seconds=hold_s))
    if not job_wait(job=job, reason=f"yielded its device ({reason})", **changes):
        return False
    job_log(job_id=job_id, level=LogLevel.WARNING, message=f"Yielded at step {step} ({reason}).")
    return True


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
