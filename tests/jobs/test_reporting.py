"""The runner's Report and the rows it writes through services.running: a cancel that lands on a
flush keeps the save it asked for, a cancelling job's last steps are recorded, a job taken from the
task is neither written (row, metric points, checkpoints) nor left running, a rewind deletes the
points a run replays, and a settled runner finishes its reports."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.jobs import reporting, services
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job, JobCheckpoint, JobMetric
from apps.jobs.reporting import JobStopped, Report, Stop
from apps.jobs.selectors import job_series
from apps.jobs.services.running import job_runs
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
    defaults: dict[str, object] = {"state": JobState.RUNNING, "task_id": TASK, "started_at": timezone.now()}
    return JobFactory(kind=JobKind.FINE_TUNE, attempts=1, **(defaults | fields))


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

    JobCheckpoint.objects.create(job=job, step=2, path="/c/step-2", size_bytes=1, reason="interval")

    assert services.job_report(job_id=job.pk, task_id=TASK, changes={"step": 3}) is written
    assert services.job_output_set(job_id=job.pk, task_id=TASK, version_id=version.pk) is written
    assert services.job_adjustments_set(job_id=job.pk, task_id=TASK, adjustments={"batch_size": 4}) is written
    assert services.job_metrics_add(job_id=job.pk, task_id=TASK, points=[("train_loss", 3, 1.5)]) is written
    added = services.job_checkpoint_add(
        job_id=job.pk, task_id=TASK, step=4, path="/c/step-4", size_bytes=1, reason="interval"
    )
    assert (added is not None) is written
    dropped = services.job_checkpoints_drop(job_id=job.pk, task_id=TASK, steps=[2])
    assert dropped == (1 if written else None)
    assert job_runs(job_id=job.pk, task_id=TASK) is written

    job.refresh_from_db()
    assert (job.step, job.output_version_id, job.adjustments) == (
        (3, version.pk, {"batch_size": 4}) if written else (0, None, {})
    )
    assert list(job.metrics.values_list("name", "step")) == ([("train_loss", 3)] if written else [])
    assert list(job.checkpoints.values_list("step", flat=True)) == ([4] if written else [2])


def test_a_runner_whose_job_was_taken_stops_at_a_refused_metric_or_checkpoint_write() -> None:
    job = running()
    report = Report(job, TASK)
    Job.objects.filter(pk=job.pk).update(task_id="task-2")

    report.metrics(step=0, values={"eval_loss": 2.0})  # refused: the next look for a stop says stop

    assert report.stop_asked() == Stop("cancel", save=False)
    assert not job.metrics.exists()
    with pytest.raises(JobStopped):
        report.checkpoint_saved(step=4, path="/c/step-4", size_bytes=1, reason="interval")
    with pytest.raises(JobStopped):
        report.checkpoints_pruned(steps=[2])
    with pytest.raises(JobStopped):
        report.ensure_running()
    assert not job.checkpoints.exists()


def test_a_rewind_deletes_the_points_past_the_step_a_run_starts_at() -> None:
    job = running()
    report = Report(job, TASK)
    for step in (1, 2, 3):
        report.step(step=step, total=10, metrics={"train_loss": 1.0 / step})
    report.metrics(step=0, values={"eval_loss": 2.0})

    report.rewind(step=2)

    assert sorted(job.metrics.values_list("name", "step")) == [
        ("eval_loss", 0),
        ("train_loss", 1),
        ("train_loss", 2),
    ]
    report.rewind(step=0)  # a run from the start: every point goes
    assert not job.metrics.exists()


def test_a_settled_runner_finishes_its_reports_through_a_cancel_and_the_time_limit() -> None:
    job = running(started_at=timezone.now() - dt.timedelta(days=1))
    report = Report(job, TASK)
    Job.objects.filter(pk=job.pk).update(task_id="task-2")
    with pytest.raises(JobStopped):
        report.progress(0.9, "Registering")

    report.settle()

    report.progress(1.0, "Registering")  # neither the lost task nor the time limit raises now
    report.log("Registered")
    assert job.events.filter(message="Registered").exists()


def test_the_series_keep_one_point_per_step_the_newest() -> None:
    job = running()
    for step, value in ((1, 3.0), (2, 2.5), (1, 2.9), (2, 2.4), (3, 2.0)):  # steps replayed
        JobMetric.objects.create(job=job, name="train_loss", step=step, value=value, at=timezone.now())

    assert job_series(job=job) == {"train_loss": [(1, 2.9), (2, 2.4), (3, 2.0)]}
