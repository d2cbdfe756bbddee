"""Running one job on a worker: take it, hand it to its kind's runner, record how it ended.

How it ends: the runner's Outcome (its error class, if any); a stop it was asked for (cancelled,
yielded back to the queue, past its time limit); or an exception it let escape, classified by
domain.failures.classify (out of memory, bad data, missing runtime, lost device, ...). A failure of
a transient class goes back to the queue by itself while attempts are left (services.job_finish).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from apps.jobs import runners, services
from apps.jobs.domain.failures import classify
from apps.jobs.domain.kinds import ErrorClass, LogLevel, time_limit_error
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.reporting import JobStopped, JobTimedOut, JobYielded, Report

log = logging.getLogger(__name__)


def job_execute(*, job_id: int, worker: str, task_id: str) -> None:
    """Run the job if this task gets it, and record how it ended.

    Safe to call twice for the same message: the second call finds the job taken or over.
    Whatever raises past the runner's own handling (the database failing while the outcome
    is recorded, say) fails the job as `internal` before it goes on to Celery: a job left
    RUNNING on a live worker is never recovered by the reconciler. Only Exception is caught:
    a worker being shut down or killed leaves its job to the reconciler, which retries it.
    """
    try:
        if services.job_start(job_id=job_id, worker=worker, task_id=task_id):
            _run(job_id=job_id, task_id=task_id)
    except Exception as exc:
        _fail_as_internal(job_id=job_id, worker=worker, task_id=task_id, exc=exc)
        raise


def _fail_as_internal(*, job_id: int, worker: str, task_id: str, exc: Exception) -> None:
    """The last resort: never raises, so the exception that got here is the one Celery sees."""
    try:
        failed = services.job_crashed(
            job_id=job_id, task_id=task_id, worker=worker, error=f"{type(exc).__name__}: {exc}"
        )
    except Exception:
        log.exception("job #%s: could not fail it after MOC's own code raised while running it", job_id)
        return
    if failed:
        log.error("job #%s failed as internal: %s: %s", job_id, type(exc).__name__, exc)


def _run(*, job_id: int, task_id: str) -> None:
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
    report = Report(job, task_id)
    try:
        outcome = runner(job, report)
    except JobTimedOut as exc:
        _timed_out(job_id, task_id, f"{time_limit_error(exc.limit_s)} It was stopped at its next report.")
        return
    except JobYielded as exc:
        # Back to the queue, unless a cancel came meanwhile: then the stop completes the cancel.
        if not services.job_yield(job_id=job_id, task_id=task_id, reason=exc.reason):
            services.job_stopped(job_id=job_id, task_id=task_id)
        return
    except JobStopped:
        services.job_stopped(job_id=job_id, task_id=task_id)
        return
    except SoftTimeLimitExceeded:
        limit = time_limit_error(settings.MOC_TASK_TIME_LIMIT)
        _timed_out(job_id, task_id, f"{limit} Celery's soft time limit stopped it.")
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
            job_id=job_id,
            task_id=task_id,
            state=JobState.FAILED,
            error_class=classify(exc),
            error=f"{type(exc).__name__}: {exc}",
        )
        return
    if report.past_deadline():
        # A runner that never reports: its message may have been handed out again meanwhile.
        error = f"{time_limit_error(report.limit_s)} It finished too late; its result is kept."
        _timed_out(job_id, task_id, error, result=outcome.result)
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


def _timed_out(job_id: int, task_id: str, error: str, result: dict[str, Any] | None = None) -> None:
    services.job_finish(
        job_id=job_id,
        task_id=task_id,
        state=JobState.FAILED,
        result=result,
        error_class=ErrorClass.TIMEOUT,
        error=error,
    )
