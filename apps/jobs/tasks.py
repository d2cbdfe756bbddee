"""Celery tasks of jobs: thin wrappers over execution and services.

Database connections: Celery's Django fixup (on whenever DJANGO_SETTINGS_MODULE is set, as
in moc_site/celery.py) closes unusable or expired connections before and after each task,
in the thread that runs it, so a worker survives a database restart between jobs.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from apps.core.delivery import DurableTask
from apps.jobs import execution, messages, services
from apps.jobs.datasets import messages as dataset_messages
from apps.jobs.datasets import services as dataset_services
from apps.jobs.datasets import validation as dataset_validation
from apps.jobs.models import Dataset


class JobTask(DurableTask):
    """A job's task: when its message is poisoned, the job it carries is failed, not left running."""

    def on_poisoned(self, job_id: int, *args: Any, **kwargs: Any) -> None:
        services.job_poisoned(job_id=job_id, task_id=self.request.id)


@shared_task(base=JobTask, bind=True, name=messages.JOB_RUN)
def job_run(self: JobTask, job_id: int) -> None:
    """Run one job; a duplicate or late delivery finds the job taken or over and does nothing."""
    execution.job_execute(job_id=job_id, worker=self.request.hostname or "", task_id=self.request.id or "")


@shared_task(base=DurableTask, name="apps.jobs.tasks.jobs_redispatch_stale", ignore_result=True)
def jobs_redispatch_stale() -> dict[str, int]:
    """The reconciler, run by beat every minute (moc_site/celery.py).

    Its counts go to the worker's log, not the result backend: 1,440 stored results a day
    would be read by nobody.
    """
    return services.jobs_redispatch_stale(now=timezone.now())


@shared_task(base=DurableTask, name=messages.JOBS_DISPATCH, ignore_result=True)
def jobs_dispatch() -> int:
    """A dispatch round: waiting jobs get their device memory reserved and are sent to its queue.
    Run by beat every MOC_JOB_DISPATCH_S (moc_site/celery.py) and kicked when a job is created, ends,
    yields or goes back to the queue; a second delivery is just another round."""
    return services.jobs_dispatch(now=timezone.now())


@shared_task(base=DurableTask, name=dataset_messages.DATASETS_SCAN, ignore_result=True)
def datasets_scan() -> dict[str, int]:
    """Beat's scan of the dataset roots (moc_site/celery.py); stat only, validations are queued."""
    return dataset_services.datasets_scan().counts()


@shared_task(base=DurableTask, name=dataset_messages.DATASET_VALIDATE)
def dataset_validate(dataset_id: int) -> str | None:
    """Read one dataset's file row by row; a second delivery reads it again to the same verdict."""
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    return dataset_validation.dataset_validate(dataset=dataset).state if dataset is not None else None
