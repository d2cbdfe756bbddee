"""Going back to the queue: automatic retries of transient failures with backoff, manual retries,
yields, and the reconciler with jobs that wait for the dispatcher."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core import redis_clients, workers
from apps.core.domain.errors import Conflict
from apps.jobs import execution, runners, services
from apps.jobs.domain.failures import BadData, DeviceLost, OutOfMemory
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.reporting import Outcome, Report
from tests.fleet.factories import GIB
from tests.jobs.factories import JobFactory
from tests.jobs.queue.conftest import dataset, fine_tune, gpu, lm

pytestmark = pytest.mark.django_db


def raises_device_lost(job: Job, report: Report) -> Outcome:
    raise DeviceLost("CUDA error: an illegal memory access was encountered")


def raises_torch_oom(job: Job, report: Report) -> Outcome:
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def raises_oom(job: Job, report: Report) -> Outcome:
    raise OutOfMemory("simulated device: the step needs 9 GiB, the job holds 4 GiB")


def raises_bad_data(job: Job, report: Report) -> Outcome:
    raise BadData("status", 7, "no completion")


def yields(job: Job, report: Report) -> Outcome:
    report.step(step=12, total=100)
    Job.objects.filter(pk=job.pk).update(preempt_requested_at=timezone.now())
    time.sleep(0.3)  # past Report.STOP_CHECK_S
    stop = report.step(step=13, total=100)
    assert stop is not None
    report.stop_now(stop)


def running(kind: str, runner: str, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Job:
    """A job of `kind`, its memory reserved and its message sent, whose runner is `runner` above."""
    monkeypatch.setitem(runners.RUNNERS, kind, f"tests.jobs.queue.test_retry.{runner}")
    values = {"device": gpu(24), "reserved_bytes": 4 * GIB, "task_id": "t1", "queue": "gpu.n.0", **fields}
    return JobFactory(kind=kind, **values)


def run(job: Job) -> Job:
    execution.job_execute(job_id=job.pk, worker="celery@w", task_id="t1")
    job.refresh_from_db()
    return job


def test_a_transient_failure_goes_back_to_the_queue_after_its_backoff(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MOC_JOB_RETRY_BACKOFF_S = 10.0
    before = timezone.now()

    job = run(running(JobKind.EVALUATE, "raises_device_lost", monkeypatch))

    assert (job.state, job.task_id, job.device, job.reserved_bytes) == (JobState.QUEUED, "", None, 0)
    assert before + dt.timedelta(seconds=9) < job.not_before < before + dt.timedelta(seconds=12)
    assert "Attempt 1 of 3 failed (device_lost)" in job.events.filter(level="warning").get().message


def test_the_backoff_doubles_with_each_attempt(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.MOC_JOB_RETRY_BACKOFF_S = 10.0
    job = running(JobKind.BENCHMARK, "raises_device_lost", monkeypatch, attempts=1)
    before = timezone.now()

    job = run(job)  # its second attempt

    assert job.state == JobState.QUEUED
    assert before + dt.timedelta(seconds=19) < job.not_before < before + dt.timedelta(seconds=22)


def test_a_transient_failure_of_the_last_attempt_fails_with_its_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = run(running(JobKind.EVALUATE, "raises_device_lost", monkeypatch, attempts=2, max_attempts=3))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.DEVICE_LOST)


def test_a_fine_tune_out_of_memory_is_not_retried_again_after_its_runners_own_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = run(running(JobKind.FINE_TUNE, "raises_oom", monkeypatch))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.OUT_OF_MEMORY)


@pytest.mark.parametrize("kind", [JobKind.EVALUATE, JobKind.BENCHMARK])
def test_out_of_memory_of_another_kind_is_final_as_the_same_parameters_would_run_out_again(
    kind: JobKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = run(running(kind, "raises_torch_oom", monkeypatch))  # classified from torch's words

    assert (job.state, job.error_class, job.attempts) == (JobState.FAILED, ErrorClass.OUT_OF_MEMORY, 1)
    assert job.not_before is None


def test_bad_data_fails_at_once_naming_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    job = run(running(JobKind.EVALUATE, "raises_bad_data", monkeypatch))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.BAD_DATA)
    assert job.error == "BadData: dataset status, row 7: no completion"


def test_a_preempted_fine_tune_yields_back_to_the_queue_giving_its_attempt_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = run(running(JobKind.FINE_TUNE, "yields", monkeypatch))

    assert (job.state, job.task_id, job.reserved_bytes, job.device) == (JobState.QUEUED, "", 0, None)
    assert (job.attempts, job.preempt_requested_at, job.step) == (0, None, 13)
    assert job.events.filter(message="Yielded at step 13 (preempt).").exists()


def test_a_cancel_that_came_while_it_yielded_wins() -> None:
    job = JobFactory(kind=JobKind.FINE_TUNE, state=JobState.CANCELLING, task_id="t1")

    assert services.job_yield(job_id=job.pk, task_id="t1", reason="preempt") is False

    job.refresh_from_db()
    assert job.state == JobState.CANCELLING


def test_a_cancel_with_save_asks_a_running_fine_tune_to_checkpoint_first() -> None:
    job = JobFactory(kind=JobKind.FINE_TUNE, state=JobState.RUNNING, task_id="t1")

    services.job_cancel(job=job, save=True)

    assert services.job_stop_asked(job_id=job.pk, task_id="t1") == ("cancel", True)


def test_only_a_fine_tune_can_be_asked_to_save() -> None:
    with pytest.raises(ValidationError) as refused:
        services.job_cancel(job=JobFactory(kind=JobKind.EVALUATE, state=JobState.RUNNING), save=True)

    assert "save" in refused.value.message_dict


def test_a_manual_retry_is_a_new_job_doing_the_same_as_the_failed_one(operator: Any) -> None:
    gpu(24)
    failed = services.job_create(
        kind="fine_tune", params=fine_tune(lm(), dataset(), batch_size=4), priority=70, max_attempts=2
    )
    Job.objects.filter(pk=failed.pk).update(state=JobState.FAILED, error_class=ErrorClass.WORKER_LOST)

    retry = services.job_retry(job=failed, created_by=operator)

    assert retry.pk != failed.pk
    assert (retry.retry_of, retry.kind, retry.params, retry.priority, retry.max_attempts) == (
        failed,
        failed.kind,
        failed.params,
        70,
        2,
    )
    assert (retry.state, retry.created_by) == (JobState.QUEUED, operator)


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED])
def test_only_a_failed_or_cancelled_job_is_retried(state: JobState, operator: Any) -> None:
    with pytest.raises(Conflict, match="only a failed or cancelled job"):
        services.job_retry(job=JobFactory(state=state), created_by=operator)


def heartbeat(hostname: str, queues: list[str]) -> None:
    workers.beat(redis_clients.redis_client(), hostname, queues, time.time() - 3600)


def test_the_reconciler_leaves_a_job_waiting_for_the_dispatcher_alone() -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(kind=JobKind.FINE_TUNE, task_id="", queued_at=timezone.now() - dt.timedelta(hours=1))

    counts = services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert (counts["redispatch"], job.task_id, job.dispatched_at) == (0, "", None)


def test_a_device_job_whose_worker_was_lost_waits_again_for_room(dispatched: list) -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(
        kind=JobKind.FINE_TUNE,
        state=JobState.RUNNING,
        device=gpu(24),
        reserved_bytes=4 * GIB,
        worker="celery@dead",
        task_id="t1",
        attempts=1,
        started_at=timezone.now() - dt.timedelta(hours=1),
    )

    counts = services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert counts["requeue"] == 1
    assert (job.state, job.task_id, job.device, job.reserved_bytes) == (JobState.QUEUED, "", None, 0)
