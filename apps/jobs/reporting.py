"""What a runner gets to talk back with (`Report`) and gives back when done (`Outcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.jobs import events, services
from apps.jobs.domain.kinds import LogLevel
from apps.jobs.models import Job


class JobStopped(Exception):
    """The job was cancelled, or taken from this worker by the reconciler: stop now."""


@dataclass(frozen=True)
class Outcome:
    """A runner's result. With an error_class the job ends FAILED, its result still kept."""

    result: dict[str, Any] = field(default_factory=dict)
    error_class: str = ""
    error: str = ""


class Report:
    """Progress and log lines from a runner to the job's row, its log and its live group.

    Every progress report is also the runner's check for a cancel: when the job is no
    longer running under this task it raises JobStopped.
    """

    def __init__(self, job: Job, task_id: str) -> None:
        self.job_id = job.pk
        self.task_id = task_id

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if not services.job_progress(
            job_id=self.job_id, task_id=self.task_id, progress=fraction, message=message
        ):
            raise JobStopped(f"job #{self.job_id} is no longer running under task {self.task_id}")
        events.publish_progress(self.job_id, fraction, message)

    def log(
        self, message: str, *, level: LogLevel = LogLevel.INFO, data: dict[str, Any] | None = None
    ) -> None:
        services.job_log(job_id=self.job_id, message=message, level=level, data=data)
