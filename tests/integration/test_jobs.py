"""Jobs through real worker processes: the self-test, priorities, and work a vanished worker left behind."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.jobs import services, tasks
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from tests.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def wait_for_state(job: Job, *states: str, timeout: float = 60) -> Job:
    wait_until(
        lambda: Job.objects.get(pk=job.pk).state in states, timeout, f"job {job.pk} to reach {states}", 0.2
    )
    return Job.objects.get(pk=job.pk)


def test_a_selftest_job_checks_database_redis_and_channel_layer_from_a_real_worker(start_worker):
    start_worker()

    job = wait_for_state(services.job_create(kind="selftest"), JobState.SUCCEEDED, JobState.FAILED)

    assert job.state == JobState.SUCCEEDED, (job.error_class, job.error, job.result)
    checks = {c["name"]: c for c in job.result["checks"]}
    assert {"database", "redis", "channel_layer", "device"} <= set(checks)
    assert all(c["ok"] for c in checks.values())
    assert job.worker.startswith("itest@")
    assert job.attempts == 1
    assert job.progress == 1.0
    assert job.events.count() >= 4


def test_a_selftest_job_runs_on_a_device_queue_worker_with_a_thread_pool(start_worker):
    start_worker(queues="gpu.itest.0", pool="threads", name="gpu.itest.0")

    job = wait_for_state(
        services.job_create(kind="selftest", queue="gpu.itest.0"), JobState.SUCCEEDED, JobState.FAILED
    )

    assert job.state == JobState.SUCCEEDED, (job.error_class, job.error)
    assert job.worker.startswith("gpu.itest.0@")


def test_jobs_waiting_in_a_queue_start_highest_priority_first(start_worker):
    # Queued before any worker runs: the worker, one job at a time, finds all three waiting.
    jobs = [
        services.job_create(kind="selftest", priority=priority, params={"checks": ["database"]})
        for priority in (10, 95, 50)
    ]
    start_worker()

    finished = [wait_for_state(job, JobState.SUCCEEDED, JobState.FAILED) for job in jobs]

    assert [job.priority for job in sorted(finished, key=lambda job: job.started_at)] == [95, 50, 10]


def test_a_job_left_running_by_a_vanished_worker_is_requeued_and_finished_by_a_live_one(
    start_worker, settings
):
    start_worker(MOC_RUNNING_LEASE_S="1")
    long_ago = timezone.now() - dt.timedelta(minutes=10)
    job = Job.objects.create(
        kind="selftest",
        state=JobState.RUNNING,
        worker="ghost@gone",
        attempts=1,
        started_at=long_ago,
        dispatched_at=long_ago,
        task_id="lost-with-its-worker",
    )

    tasks.jobs_redispatch_stale.delay()  # it stores no result: watch the job instead

    job = wait_for_state(job, JobState.SUCCEEDED, JobState.FAILED)
    assert job.state == JobState.SUCCEEDED, (job.error_class, job.error)
    assert job.events.filter(message__startswith="Queued again: worker 'ghost@gone' was lost").exists()
    assert job.attempts == 2
    assert job.worker.startswith("itest@")


def test_a_job_whose_worker_vanished_on_its_last_attempt_is_failed_as_worker_lost(start_worker):
    start_worker(MOC_RUNNING_LEASE_S="1")
    long_ago = timezone.now() - dt.timedelta(minutes=10)
    job = Job.objects.create(
        kind="selftest",
        state=JobState.RUNNING,
        worker="ghost@gone",
        attempts=3,
        max_attempts=3,
        started_at=long_ago,
        dispatched_at=long_ago,
        task_id="lost-for-good",
    )

    tasks.jobs_redispatch_stale.delay()

    job = wait_for_state(job, JobState.FAILED, JobState.SUCCEEDED, JobState.QUEUED)
    assert job.state == JobState.FAILED
    assert job.error_class == "worker_lost"
    assert "ghost@gone" in job.error
