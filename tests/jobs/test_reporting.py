"""The runner's Report and the rows it writes through services.running: a cancel that lands on a
flush keeps the save it asked for, a cancelling job's last steps are recorded, and a job taken from
the task is neither written nor left running."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.jobs import reporting, services
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.reporting import Report, Stop
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

TASK = "task-1"


@pytest.fixture(autouse=True)
def _every_step_flushes_and_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step writes its row and looks for a stop (the worker's defaults batch both)."""
    monkeypatch.setattr(reporting, "FLUSH_S", 0.0)
    monkeypatch.setattr(reporting, "STOP_CHECK_S", 0.0)


def running(**fields: object) -> Job:
    defaults: dict[str, object] = {"state": JobState.RUNNING, "task_id": TASK}
    return JobFactory(kind=JobKind.FINE_TUNE, started_at=timezone.now(), attempts=1, **(defaults | fields))


def test_a_cancel_with_save_that_lands_on_a_flush_asks_for_the_checkpoint_and_records_the_step() -> None:
    job = running()
    report = Report(job, TASK)
    assert report.step(step=1, total=10, tokens=64) is None

    services.job_cancel(job=job, save=True)
    stop = report.step(step=2, total=10, tokens=64)

    assert stop == Stop("cancel", save=True)
    job.refresh_from_db()
    assert (job.state, job.step, job.total_steps) == (JobState.CANCELLING, 2, 10)


def test_a_cancel_without_save_stops_without_a_checkpoint() -> None:
    job = running()
    report = Report(job, TASK)

    services.job_cancel(job=job)

    assert report.step(step=1, total=10) == Stop("cancel", save=False)


def test_a_job_taken_by_another_task_is_not_written_and_its_old_runner_stops_without_saving() -> None:
    job = running(step=5)
    report = Report(job, TASK)
    Job.objects.filter(pk=job.pk).update(task_id="task-2")  # the reconciler gave it to another

    stop = report.step(step=6, total=10)

    assert stop == Stop("cancel", save=False)
    job.refresh_from_db()
    assert job.step == 5


@pytest.mark.parametrize(
    ("state", "task", "written"),
    [
        (JobState.RUNNING, TASK, True),
        (JobState.CANCELLING, TASK, True),
        (JobState.QUEUED, TASK, False),
        (JobState.CANCELLED, TASK, False),
        (JobState.SUCCEEDED, TASK, False),
        (JobState.RUNNING, "task-2", False),
    ],
)
def test_a_runners_writes_land_only_while_its_task_runs_the_job(state: str, task: str, written: bool) -> None:
    job = running(state=state, task_id=task)
    version = ModelVersionFactory()

    assert services.job_report(job_id=job.pk, task_id=TASK, changes={"step": 3}) is written
    assert services.job_output_set(job_id=job.pk, task_id=TASK, version_id=version.pk) is written
    assert services.job_adjustments_set(job_id=job.pk, task_id=TASK, adjustments={"batch_size": 4}) is written

    job.refresh_from_db()
    assert (job.step, job.output_version_id, job.adjustments) == (
        (3, version.pk, {"batch_size": 4}) if written else (0, None, {})
    )
