"""What a running job's runner writes while it runs: its pace, metric points, checkpoints, and the
question whether it should stop."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from django.utils import timezone

from apps.jobs.domain.states import JobState
from apps.jobs.models import Job, JobCheckpoint, JobMetric

# A runner's row: only these fields, so a report can never move the state or the task.
_REPORTED = frozenset({"step", "total_steps", "progress", "eta_s", "tokens_per_s", "memory_bytes", "message"})


def job_report(*, job_id: int, task_id: str, changes: dict[str, Any]) -> bool:
    """Write a runner's pace (step, total_steps, progress, eta_s, tokens_per_s, memory_bytes,
    message); False when the job is no longer running under this task (cancelled, taken over)."""
    unknown = set(changes) - _REPORTED
    if unknown:
        raise ValueError(f"a runner does not report {sorted(unknown)}")
    return (
        Job.objects.filter(pk=job_id, task_id=task_id, state=JobState.RUNNING).update(
            **changes, updated_at=timezone.now()
        )
        == 1
    )


def job_metrics_add(*, job_id: int, points: Sequence[tuple[str, int, float]]) -> None:
    """Append metric points (name, step, value) to the job's series."""
    now = timezone.now()
    JobMetric.objects.bulk_create(
        [
            JobMetric(job_id=job_id, name=name[:40], step=step, value=value, at=now)
            for name, step, value in points
        ]
    )


def job_checkpoint_add(*, job_id: int, step: int, path: str, size_bytes: int, reason: str) -> JobCheckpoint:
    """Record a complete checkpoint (written again at the same step: the newer one stands)."""
    checkpoint, _ = JobCheckpoint.objects.update_or_create(
        job_id=job_id,
        step=step,
        defaults={"path": path, "size_bytes": size_bytes, "reason": reason[:16], "at": timezone.now()},
    )
    return checkpoint


def job_checkpoints_drop(*, job_id: int, steps: Collection[int]) -> int:
    return JobCheckpoint.objects.filter(job_id=job_id, step__in=list(steps)).delete()[0]


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
