"""What a runner gets to talk back with (`Report`) and gives back when done (`Outcome`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.jobs import services
from apps.jobs.domain.kinds import LogLevel
from apps.jobs.models import Job


class JobStopped(Exception):
    """The job was cancelled, or taken from this worker by the reconciler: stop now."""


class JobTimedOut(JobStopped):
    """The job ran past the task time limit: stop now."""

    def __init__(self, limit_s: int) -> None:
        super().__init__(f"the job ran past the task time limit of {limit_s} s")
        self.limit_s = limit_s


@dataclass(frozen=True)
class Outcome:
    """A runner's result. With an error_class the job ends FAILED, its result still kept."""

    result: dict[str, Any] = field(default_factory=dict)
    error_class: str = ""
    error: str = ""


class Report:
    """Progress and log lines from a runner to the job's row and its log.

    Every report is also the runner's check for the task time limit, and every progress
    report its check for a cancel: when the job ran past `deadline` it raises JobTimedOut,
    and when the job is no longer running under this task it raises JobStopped.

    The limit is enforced here, cooperatively, because Celery's own time limits do nothing
    in the thread pool device-queue workers run: a job past the limit would run on while the
    broker, its visibility timeout over, handed its message out again.
    """

    def __init__(self, job: Job, task_id: str) -> None:
        self.job_id = job.pk
        self.task_id = task_id
        self.limit_s: int = settings.MOC_TASK_TIME_LIMIT
        self.deadline = (job.started_at or timezone.now()) + dt.timedelta(seconds=self.limit_s)

    def past_deadline(self) -> bool:
        return timezone.now() >= self.deadline

    def progress(self, fraction: float, message: str = "") -> None:
        self._check_deadline()
        fraction = min(max(fraction, 0.0), 1.0)
        if not services.job_progress(
            job_id=self.job_id, task_id=self.task_id, progress=fraction, message=message
        ):
            raise JobStopped(f"job #{self.job_id} is no longer running under task {self.task_id}")

    def log(
        self, message: str, *, level: LogLevel = LogLevel.INFO, data: dict[str, Any] | None = None
    ) -> None:
        self._check_deadline()
        services.job_log(job_id=self.job_id, message=message, level=level, data=data)

    def _check_deadline(self) -> None:
        if self.past_deadline():
            raise JobTimedOut(self.limit_s)
