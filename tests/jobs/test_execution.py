"""Running jobs in-process through execution.job_execute, with test runners where needed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError

from apps.core.events import ACTIVITY_GROUP
from apps.jobs import execution, runners, services
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.reporting import Outcome, Report
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db


def runner_that_raises(job: Job, report: Report) -> Outcome:
    raise ValueError("the weights are on fire")


def runner_that_gets_cancelled(job: Job, report: Report) -> Outcome:
    report.progress(0.25, "warming up")
    services.job_cancel(job=job)
    report.progress(0.5, "never recorded")
    return Outcome(result={"unreachable": True})


def runner_that_finds_a_problem(job: Job, report: Report) -> Outcome:
    report.log("looked around")
    return Outcome(result={"seen": 1}, error_class=ErrorClass.CHECK_FAILED, error="one thing is wrong")


def runner_that_keeps_reporting(job: Job, report: Report) -> Outcome:
    for step in range(1, 100):
        report.progress(step / 100, f"step {step}")
        time.sleep(0.05)
    return Outcome(result={"finished": True})


def runner_that_logs_past_the_limit(job: Job, report: Report) -> Outcome:
    time.sleep(1.1)
    report.log("never written")
    return Outcome(result={"finished": True})


def runner_that_never_reports(job: Job, report: Report) -> Outcome:
    time.sleep(1.1)
    return Outcome(result={"late": True})


def runner_that_succeeds(job: Job, report: Report) -> Outcome:
    return Outcome(result={"ok": True})


@pytest.fixture
def fake_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark kind runs whichever test runner the test names through params."""
    monkeypatch.setitem(runners.RUNNERS, JobKind.BENCHMARK.value, "tests.jobs.test_execution.dispatch_runner")


def dispatch_runner(job: Job, report: Report) -> Outcome:
    return globals()[job.params["runner"]](job, report)


def run(job: Job) -> Job:
    if not job.task_id:  # as the dispatcher's send would have named it: a device kind runs only from that
        Job.objects.filter(pk=job.pk).update(task_id="t1")
    execution.job_execute(job_id=job.pk, worker="celery@test", task_id="t1")
    job.refresh_from_db()
    return job


def test_a_selftest_runs_to_success_in_process() -> None:
    job = run(JobFactory(kind=JobKind.SELFTEST))

    assert (job.state, job.progress, job.result["ok"]) == (JobState.SUCCEEDED, 1.0, True)


def test_a_job_another_task_took_is_not_run_again() -> None:
    job = JobFactory(kind=JobKind.SELFTEST, state=JobState.RUNNING, task_id="t0", worker="celery@other")

    job = run(job)

    assert (job.state, job.worker) == (JobState.RUNNING, "celery@other")
    assert not job.events.exists()


def test_a_runner_that_raises_fails_the_job_with_the_exception(fake_runners: None) -> None:
    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_raises"}))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.RUNNER_ERROR)
    assert job.error == "ValueError: the weights are on fire"


def test_a_runner_that_raises_leaves_its_traceback_in_the_log(fake_runners: None) -> None:
    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_raises"}))

    event = job.events.get(message="The runner raised.")
    assert "the weights are on fire" in event.data["traceback"]


def test_a_cancel_stops_the_runner_at_its_next_progress_report(fake_runners: None) -> None:
    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_gets_cancelled"}))

    assert (job.state, job.progress, job.message) == (JobState.CANCELLED, 0.25, "Cancelled.")
    assert job.result == {}


def test_a_runner_outcome_with_an_error_class_fails_the_job_and_keeps_its_result(fake_runners: None) -> None:
    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_finds_a_problem"}))

    assert (job.state, job.error_class, job.result) == (JobState.FAILED, ErrorClass.CHECK_FAILED, {"seen": 1})


def test_a_kind_that_lost_its_runner_fails_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(runners.RUNNERS, JobKind.SELFTEST.value)

    job = run(JobFactory(kind=JobKind.SELFTEST))

    assert job.state == JobState.FAILED
    assert job.error == "This worker has no runner for kind selftest."


def test_a_runner_that_reports_past_the_time_limit_is_stopped_and_fails_as_timeout(
    fake_runners: None, settings: Any
) -> None:
    settings.MOC_TASK_TIME_LIMIT = 1

    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_keeps_reporting"}))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.TIMEOUT)
    assert 0 < job.progress < 0.5
    assert job.error == (
        "It ran past the task time limit of 1 s (MOC_TASK_TIME_LIMIT). It was stopped at its next report."
    )


def test_a_runner_that_only_logs_is_stopped_at_its_first_line_past_the_time_limit(
    fake_runners: None, settings: Any
) -> None:
    settings.MOC_TASK_TIME_LIMIT = 1

    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_logs_past_the_limit"}))

    assert (job.state, job.error_class, job.result) == (JobState.FAILED, ErrorClass.TIMEOUT, {})
    assert not job.events.filter(message="never written").exists()


def test_a_runner_that_returns_after_the_time_limit_fails_as_timeout_keeping_its_result(
    fake_runners: None, settings: Any
) -> None:
    settings.MOC_TASK_TIME_LIMIT = 1

    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_never_reports"}))

    assert (job.state, job.error_class, job.result) == (JobState.FAILED, ErrorClass.TIMEOUT, {"late": True})
    assert "time limit of 1 s (MOC_TASK_TIME_LIMIT)" in job.error


def test_a_runner_within_the_time_limit_is_not_stopped(fake_runners: None, settings: Any) -> None:
    settings.MOC_TASK_TIME_LIMIT = 60

    job = run(JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_succeeds"}))

    assert job.state == JobState.SUCCEEDED


def test_a_database_error_recording_the_outcome_fails_the_job_as_internal_and_is_raised(
    fake_runners: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = DatabaseError("the database went away")

    def finish_fails(**kwargs: Any) -> bool:
        raise error

    monkeypatch.setattr(services, "job_finish", finish_fails)
    job = JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_succeeds"})

    with pytest.raises(DatabaseError) as caught:
        run(job)

    job.refresh_from_db()
    assert caught.value is error
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.INTERNAL)
    assert job.error == "MOC failed while running it: DatabaseError: the database went away"


def test_the_original_exception_is_raised_even_when_the_last_resort_fails_too(
    fake_runners: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def finish_fails(**kwargs: Any) -> bool:
        raise DatabaseError("the original")

    def crashed_fails(**kwargs: Any) -> bool:
        raise DatabaseError("the last resort's")

    monkeypatch.setattr(services, "job_finish", finish_fails)
    monkeypatch.setattr(services, "job_crashed", crashed_fails)
    job = JobFactory(kind=JobKind.BENCHMARK, params={"runner": "runner_that_succeeds"})

    with pytest.raises(DatabaseError, match="^the original$"):
        run(job)


def test_an_error_right_after_the_job_started_fails_it_as_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    start = services.job_start

    def start_then_fail(**kwargs: Any) -> bool:
        start(**kwargs)
        raise DatabaseError("lost the connection")

    monkeypatch.setattr(services, "job_start", start_then_fail)
    job = JobFactory(kind=JobKind.SELFTEST)

    with pytest.raises(DatabaseError):
        run(job)

    job.refresh_from_db()
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.INTERNAL)


def test_an_error_before_the_job_started_leaves_it_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    def start_fails(**kwargs: Any) -> bool:
        raise DatabaseError("no database yet")

    monkeypatch.setattr(services, "job_start", start_fails)
    job = JobFactory(kind=JobKind.SELFTEST)

    with pytest.raises(DatabaseError):
        run(job)

    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_running_a_job_publishes_nothing_to_the_activity_feed_or_a_job_group(
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = JobFactory(kind=JobKind.SELFTEST, params={"checks": ["database"]})
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    for group in (ACTIVITY_GROUP, f"job.{job.pk}"):
        async_to_sync(layer.group_add)(group, channel)

    with django_capture_on_commit_callbacks(execute=True):
        job = run(job)

    async def next_message() -> dict | None:
        try:
            return await asyncio.wait_for(layer.receive(channel), 0.5)
        except TimeoutError:
            return None

    assert job.state == JobState.SUCCEEDED
    assert async_to_sync(next_message)() is None
