"""Running one job on a worker: take it, hand it to its kind's runner, record how it ended."""

from __future__ import annotations

import logging
import traceback

from celery.exceptions import SoftTimeLimitExceeded

from apps.jobs import runners, services
from apps.jobs.domain.kinds import ErrorClass, LogLevel
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.reporting import JobStopped, Report

log = logging.getLogger(__name__)


def job_execute(*, job_id: int, worker: str, task_id: str) -> None:
    """Run the job if this task gets it, and record how it ended.

    Safe to call twice for the same message: the second call finds the job taken or over.
    """
    if not services.job_start(job_id=job_id, worker=worker, task_id=task_id):
        return
    job = Job.objects.get(pk=job_id)
    runner = runners.runner_for(job.kind)
    if runner is None:
        services.job_finish(
            job_id=job_id,
            task_id=task_id,
            state=JobState.FAILED,
            error=f"This worker has no runner for kind {job.kind}.",
        )
        return
    try:
        outcome = runner(job, Report(job, task_id))
    except JobStopped:
        services.job_stopped(job_id=job_id, task_id=task_id)
        return
    except SoftTimeLimitExceeded:
        services.job_finish(
            job_id=job_id,
            task_id=task_id,
            state=JobState.FAILED,
            error_class=ErrorClass.TIMEOUT,
            error="It ran past the task time limit (MOC_TASK_TIME_LIMIT) and was stopped.",
        )
        return
    except Exception as exc:
        log.exception("job #%s (%s) failed", job_id, job.kind)
        services.job_log(
            job_id=job_id,
            level=LogLevel.ERROR,
            message="The runner raised.",
            data={"traceback": traceback.format_exc()},
        )
        services.job_finish(
            job_id=job_id, task_id=task_id, state=JobState.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        return
    state = JobState.FAILED if outcome.error_class else JobState.SUCCEEDED
    services.job_finish(
        job_id=job_id,
        task_id=task_id,
        state=state,
        result=outcome.result,
        error_class=outcome.error_class,
        error=outcome.error,
    )
