"""The two fields of a job that its fine-tune runner writes besides its pace: what MOC changed in its
parameters while running it (`adjustments`) and the version it registered (`output_version`).

Written by the worker, so not audited (apps.core.audit: MOC acting, not a person), and only while
the job is still running under this task, so a late runner cannot touch a job taken from it.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from apps.jobs.domain.states import JobState
from apps.jobs.models import Job


def job_adjustments_set(*, job_id: int, task_id: str, adjustments: dict[str, Any]) -> bool:
    """Replace the job's adjustments; False when the job is no longer running under this task."""
    return (
        Job.objects.filter(pk=job_id, task_id=task_id, state=JobState.RUNNING).update(
            adjustments=adjustments, updated_at=timezone.now()
        )
        == 1
    )


def job_output_set(*, job_id: int, task_id: str, version_id: int) -> bool:
    """Record the version the job registered; False when the job is no longer running under this task."""
    return (
        Job.objects.filter(pk=job_id, task_id=task_id, state=JobState.RUNNING).update(
            output_version_id=version_id, updated_at=timezone.now()
        )
        == 1
    )
