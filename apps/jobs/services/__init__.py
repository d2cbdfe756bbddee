"""Writes for jobs. Every state change goes through `transition()` (a conditional UPDATE),
so a task delivered twice, a late cancel or a reconciler racing a worker can never move a
job twice."""

from apps.jobs.services.creating import job_create, job_retry
from apps.jobs.services.dispatcher import jobs_dispatch
from apps.jobs.services.lifecycle import (
    dispatcher_kick,
    job_cancel,
    job_crashed,
    job_dispatch,
    job_fail,
    job_finish,
    job_log,
    job_poisoned,
    job_progress,
    job_start,
    job_stopped,
    job_wait,
    job_yield,
    retries_by_itself,
)
from apps.jobs.services.reconciler import jobs_redispatch_stale
from apps.jobs.services.running import (
    job_adjustments_set,
    job_checkpoint_add,
    job_checkpoints_drop,
    job_metrics_add,
    job_output_set,
    job_report,
    job_stop_asked,
)

__all__ = [
    "dispatcher_kick",
    "job_adjustments_set",
    "job_cancel",
    "job_checkpoint_add",
    "job_checkpoints_drop",
    "job_create",
    "job_crashed",
    "job_dispatch",
    "job_fail",
    "job_finish",
    "job_log",
    "job_metrics_add",
    "job_output_set",
    "job_poisoned",
    "job_progress",
    "job_report",
    "job_retry",
    "job_start",
    "job_stop_asked",
    "job_stopped",
    "job_wait",
    "job_yield",
    "jobs_dispatch",
    "jobs_redispatch_stale",
    "retries_by_itself",
]
