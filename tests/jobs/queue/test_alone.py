"""A benchmark runs alone on its device: no job is placed beside a running or reserved benchmark, and
a benchmark waits until no other job runs where it would go; with the real database and ledger."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from apps.jobs import services
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.services import dispatcher
from tests.fleet.factories import GIB
from tests.jobs.factories import JobFactory
from tests.jobs.queue.conftest import dataset, gpu, lm

pytestmark = pytest.mark.django_db


def dispatch() -> None:
    services.jobs_dispatch(now=timezone.now())


def running(kind: str, device: Any, *, gib: float = 2) -> Job:
    return JobFactory(
        kind=kind,
        state=JobState.RUNNING,
        device=device,
        reserved_bytes=int(gib * GIB),
        task_id=f"t-{kind}",
        started_at=timezone.now(),
    )


def benchmark(*, priority: int = 50, **fields: Any) -> Job:
    return services.job_create(
        kind="benchmark",
        params={"version": lm().pk, "memory_bytes": 2 * GIB},
        priority=priority,
        wait_for_room=True,
        **fields,
    )


def evaluation(*, priority: int = 50, **fields: Any) -> Job:
    return services.job_create(
        kind="evaluate",
        params={"version": lm().pk, "dataset": dataset().pk, "memory_bytes": GIB},
        priority=priority,
        wait_for_room=True,
        **fields,
    )


def refreshed(job: Job) -> Job:
    job.refresh_from_db()
    return job


def test_no_job_goes_beside_a_running_benchmark(dispatched: list) -> None:
    measuring, other = gpu(24), gpu(24)
    running("benchmark", measuring)

    job = refreshed(_dispatched(evaluation()))

    assert job.device == other


def test_a_job_pinned_to_a_device_running_a_benchmark_waits_saying_why(dispatched: list) -> None:
    measuring = gpu(24)
    running("benchmark", measuring)

    job = refreshed(_dispatched(evaluation(device=measuring)))

    assert (job.device, job.reserved_bytes) == (None, 0)
    assert "runs a benchmark, which runs alone on its device" in job.message


def test_a_benchmark_waits_until_no_other_job_runs_on_its_device(dispatched: list) -> None:
    device = gpu(24)
    other = running("evaluate", device)

    waiting = refreshed(_dispatched(benchmark()))

    assert (waiting.device, waiting.reserved_bytes) == (None, 0)
    assert "runs other jobs, and a benchmark waits until it runs alone on its device" in waiting.message

    services.job_finish(job_id=other.pk, task_id=other.task_id, state=JobState.SUCCEEDED)
    waiting = refreshed(_dispatched(waiting))
    assert (waiting.device, waiting.reserved_bytes) == (device, 2 * GIB)


def test_a_benchmark_reserved_in_a_round_keeps_later_jobs_of_that_round_off_its_device(
    dispatched: list,
) -> None:
    device = gpu(24)
    first = benchmark(priority=90)
    later = evaluation(priority=10)

    dispatch()

    first, later = refreshed(first), refreshed(later)
    assert (first.device, later.device) == (device, None)
    assert "runs a benchmark" in later.message


def test_a_waiting_benchmark_keeps_its_device_from_later_jobs_so_it_gets_to_run(dispatched: list) -> None:
    device = gpu(24)
    running("evaluate", device)
    waiting = benchmark(priority=90)
    later = evaluation(priority=10)

    dispatch()

    assert refreshed(later).reserved_bytes == 0
    assert f"is kept for job #{waiting.pk}" in refreshed(later).message


def _dispatched(job: Job) -> Job:
    dispatch()
    return job


def test_a_round_that_read_the_devices_before_a_benchmark_was_reserved_there_still_refuses(
    dispatched: list,
) -> None:
    device = gpu(24)
    job = evaluation()
    stale = dispatcher._Round(devices={device.pk: device}, holding={}, holds={})  # read before
    running("benchmark", device)  # what another round reserved meanwhile

    why = dispatcher._reserve(job, dispatcher._waiting(job), barred={}, this_round=stale)

    assert "runs a benchmark, which runs alone on its device" in str(why)
    assert refreshed(job).reserved_bytes == 0
