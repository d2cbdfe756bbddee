from __future__ import annotations

import pytest

from apps.jobs import tasks
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from moc_site.celery import app
from tests.jobs.factories import JobFactory


def test_the_beat_schedule_names_the_reconciler_task() -> None:
    entry = app.conf.beat_schedule["jobs-redispatch-stale"]

    assert entry["task"] == tasks.jobs_redispatch_stale.name


def test_the_reconciler_task_stores_no_result() -> None:
    assert tasks.jobs_redispatch_stale.ignore_result is True


def test_job_run_is_a_durable_task_acknowledged_late() -> None:
    assert tasks.job_run.acks_late is True
    assert tasks.job_run.reject_on_worker_lost is True


@pytest.mark.django_db
def test_job_run_called_directly_runs_the_job() -> None:
    job = JobFactory(kind=JobKind.SELFTEST, params={"checks": ["database"]})

    tasks.job_run(job.pk)

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED


@pytest.mark.django_db
def test_a_poisoned_job_run_message_fails_its_job() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t-poison", worker="celery@dead")
    tasks.job_run.push_request(id="t-poison")
    try:
        tasks.job_run.on_poisoned(job.pk)
    finally:
        tasks.job_run.pop_request()

    job.refresh_from_db()
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.POISONED)


@pytest.mark.django_db
def test_the_reconciler_task_reports_what_it_did() -> None:
    assert tasks.jobs_redispatch_stale() == {"redispatch": 0, "requeue": 0, "fail": 0, "cancel": 0}
