"""Running jobs in-process through execution.job_execute, with test runners where needed."""

from __future__ import annotations

import pytest

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


@pytest.fixture
def fake_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark kind runs whichever test runner the test names through params."""
    monkeypatch.setitem(runners.RUNNERS, JobKind.BENCHMARK.value, "tests.jobs.test_execution.dispatch_runner")


def dispatch_runner(job: Job, report: Report) -> Outcome:
    return globals()[job.params["runner"]](job, report)


def run(job: Job) -> Job:
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
