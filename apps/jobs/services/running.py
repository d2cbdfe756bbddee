"""What a running job's runner writes while it runs: its pace, metric points, checkpoints, and the
question whether it should stop."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.jobs.domain.states import JobState
from apps.jobs.models import Job, JobCheckpoint, JobMetric

# A runner's row: only these fields, so a report can never move the state or the task.
_REPORTED = frozenset({"step", "total_steps", "progress", "eta_s", "tokens_per_s", "memory_bytes", "message"})
# The states a job's runner still runs in: running, and being cancelled (it stops within one step,
# and a cancel that lands after the runner finished does not hide its outcome).
_RUNS = (JobState.RUNNING, JobState.CANCELLING)
_UNFINISHED = (JobState.QUEUED, *_RUNS)


def _running(job_id: int, task_id: str) -> QuerySet[Job]:
    """The job's row while this task runs it: what a runner's writes update (never another's job,
    never one that ended or went back to the queue)."""
    return Job.objects.filter(pk=job_id, task_id=task_id, state__in=_RUNS)


def job_report(*, job_id: int, task_id: str, changes: dict[str, Any]) -> bool:
    """Write a runner's pace (step, total_steps, progress, eta_s, tokens_per_s, memory_bytes,
    message); False when the job is no longer running under this task (taken over, ended). A job
    being cancelled still runs its last steps (and its checkpoint), so they are recorded too."""
    unknown = set(changes) - _REPORTED
    if unknown:
        raise ValueError(f"a runner does not report {sorted(unknown)}")
    return _running(job_id, task_id).update(**changes, updated_at=timezone.now()) == 1


def _held(job_id: int, task_id: str) -> bool:
    """Whether this task runs the job, its row locked to the end of the transaction, so that the job
    cannot be requeued or ended between this answer and the write that follows it."""
    return _running(job_id, task_id).select_for_update().values_list("pk", flat=True).first() is not None


def job_runs(*, job_id: int, task_id: str) -> bool:
    """Whether this task still runs the job (RUNNING or CANCELLING under it): a runner asks before
    it writes to disk what another attempt of the job could be reading."""
    return _running(job_id, task_id).exists()


def job_metrics_add(*, job_id: int, task_id: str, points: Sequence[tuple[str, int, float]]) -> bool:
    """Append metric points (name, step, value) to the job's series; False (nothing written) when
    the job no longer runs under this task."""
    with transaction.atomic():
        if not _held(job_id, task_id):
            return False
        now = timezone.now()
        JobMetric.objects.bulk_create(
            [
                JobMetric(job_id=job_id, name=name[:40], step=step, value=value, at=now)
                for name, step, value in points
            ]
        )
    return True


def job_metrics_rewind(*, job_id: int, task_id: str, step: int) -> bool:
    """Delete the job's metric points past `step` (-1: all of them): a run that starts again, or
    resumes from a checkpoint behind where an earlier run got, reports those steps anew, and the
    curves would otherwise go back and forth. False when the job no longer runs under this task."""
    with transaction.atomic():
        if not _held(job_id, task_id):
            return False
        JobMetric.objects.filter(job_id=job_id, step__gt=step).delete()
    return True


def job_checkpoint_add(
    *, job_id: int, task_id: str, step: int, path: str, size_bytes: int, reason: str
) -> JobCheckpoint | None:
    """Record a complete checkpoint (written again at the same step: the newer one stands); None
    (nothing written) when the job no longer runs under this task."""
    with transaction.atomic():
        if not _held(job_id, task_id):
            return None
        checkpoint, _ = JobCheckpoint.objects.update_or_create(
            job_id=job_id,
            step=step,
            defaults={"path": path, "size_bytes": size_bytes, "reason": reason[:16], "at": timezone.now()},
        )
    return checkpoint


def job_checkpoints_drop(*, job_id: int, task_id: str, steps: Collection[int]) -> int | None:
    """Forget the job's checkpoints at `steps` (deleted from disk); None when the job no longer runs
    under this task."""
    with transaction.atomic():
        if not _held(job_id, task_id):
            return None
        return JobCheckpoint.objects.filter(job_id=job_id, step__in=list(steps)).delete()[0]


def job_checkpoints_clear(*, job_id: int, task_id: str, job_ids: Sequence[int]) -> list[int] | None:
    """Forget the checkpoints of `job_ids` (the job, then the jobs it retries) once the job's output
    is registered, and say whose folders may be deleted: all of them, except where another unfinished
    job retries one of them (it may still resume from its checkpoints or older ones). None when the
    job no longer runs under this task (nothing is forgotten)."""
    with transaction.atomic():
        if not _held(job_id, task_id):
            return None
        resumed_from = set(
            Job.objects.filter(retry_of_id__in=job_ids, state__in=_UNFINISHED)
            .exclude(pk=job_id)
            .values_list("retry_of_id", flat=True)
        )
        # An unfinished retry resumes from the newest checkpoint along the chain from the job it
        # retries: that job's folder and every older one's stay.
        kept_from = min((job_ids.index(pk) for pk in resumed_from), default=len(job_ids))
        cleared = list(job_ids[:kept_from])
        JobCheckpoint.objects.filter(job_id__in=cleared).delete()
    return cleared


def job_stop_asked(*, job_id: int, task_id: str) -> tuple[str, bool] | None:
    """(reason, save a checkpoint first) when the runner of this task should stop: `cancel` (with the
    save the cancel asked for), `preempt` (always saved), or `cancel` without a save when the job is
    no longer this task's at all. None: carry on."""
    row = (
        Job.objects.filter(pk=job_id).values("state", "task_id", "stop_save", "preempt_requested_at").first()
    )
    if row is None or row["task_id"] != task_id:
        return ("cancel", False)
    if row["state"] == JobState.CANCELLING:
        return ("cancel", bool(row["stop_save"]))
    if row["state"] != JobState.RUNNING:
        return ("cancel", False)
    if row["preempt_requested_at"] is not None:
        return ("preempt", True)
    return None


def job_adjustments_set(*, job_id: int, task_id: str, adjustments: dict[str, Any]) -> bool:
    """Replace what MOC changed in the job's parameters while running it (a fine-tune's batch after an
    out-of-memory); False when the job no longer runs under this task. Written by the worker,
    so not audited (apps.core.audit: MOC acting, not a person)."""
    return _running(job_id, task_id).update(adjustments=adjustments, updated_at=timezone.now()) == 1


def job_output_set(*, job_id: int, task_id: str, version_id: int) -> bool:
    """Record the version the job registered (a fine-tune's or a conversion's output); False when the
    job no longer runs under this task, so a late runner cannot touch a job taken from it."""
    return _running(job_id, task_id).update(output_version_id=version_id, updated_at=timezone.now()) == 1
