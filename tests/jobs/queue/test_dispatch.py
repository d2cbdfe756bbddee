"""The dispatcher with the real database and ledger: reservations, the order jobs go in, backfill,
evictions, preemption, and a reserved job refusing a placement that would over-commit its device."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs import messages, services
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import GIB
from tests.jobs.factories import JobFactory
from tests.jobs.queue.conftest import dataset, fine_tune, gpu, lm, served
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db


def queue(gib: float, *, priority: int = 50, wait: bool = True, **fields: Any) -> Job:
    """A fine-tune reserving `gib` GiB, waiting for the dispatcher."""
    return services.job_create(
        kind="fine_tune",
        params=fine_tune(lm(), dataset(), memory_bytes=int(gib * GIB)),
        priority=priority,
        wait_for_room=wait,
        **fields,
    )


def dispatch() -> int:
    return services.jobs_dispatch(now=timezone.now())


def sent_jobs(dispatched: list) -> list[tuple[int, str]]:
    return [(args[0], options["queue"]) for name, args, options in dispatched if name == messages.JOB_RUN]


def refreshed(*jobs: Job) -> list[Job]:
    for job in jobs:
        job.refresh_from_db()
    return list(jobs)


def test_a_waiting_job_gets_its_memory_reserved_and_is_sent_to_that_devices_queue(
    dispatched: list, django_capture_on_commit_callbacks: Any
) -> None:
    device = gpu(24)
    job = queue(10)

    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch() == 1

    (job,) = refreshed(job)
    assert (job.device, job.reserved_bytes, job.queue) == (device, 10 * GIB, device.queue)
    assert job.task_id
    assert sent_jobs(dispatched) == [(job.pk, device.queue)]


def test_the_estimate_is_reserved_when_no_memory_is_named() -> None:
    gpu(24)
    job = services.job_create(kind="fine_tune", params=fine_tune(lm(), dataset()))

    dispatch()

    (job,) = refreshed(job)
    assert 64 * 1024**2 < job.reserved_bytes < GIB  # the tiny model's weights, moments and activations


def test_memory_a_dispatched_job_reserved_refuses_a_placement_that_would_over_commit(
    dispatched: list,
) -> None:
    device = gpu(24)
    queue(20)
    dispatch()

    with pytest.raises(placing.PlacementRefused):
        placing.placement_load(version=served(10), device=device)

    placing.placement_load(version=served(3), device=device)  # what is left still takes a smaller one


def test_a_running_job_keeps_its_reservation_and_an_ended_one_lets_go(dispatched: list) -> None:
    device = gpu(24)
    job = queue(20)
    dispatch()
    (job,) = refreshed(job)
    assert services.job_start(job_id=job.pk, worker="celery@w", task_id=job.task_id)

    with pytest.raises(placing.PlacementRefused):
        placing.placement_load(version=served(10), device=device)

    services.job_finish(job_id=job.pk, task_id=job.task_id, state=JobState.SUCCEEDED)
    assert placing.placement_load(version=served(10), device=device).device == device


def test_higher_priority_goes_first_then_the_older(dispatched: list) -> None:
    gpu(24)
    low = queue(10, priority=10)
    old = queue(10, priority=70)
    young = queue(10, priority=70)
    high = queue(10, priority=90)
    Job.objects.filter(pk=old.pk).update(queued_at=timezone.now() - dt.timedelta(minutes=5))

    assert dispatch() == 2

    low, old, young, high = refreshed(low, old, young, high)
    assert [bool(j.reserved_bytes) for j in (high, old, young, low)] == [True, True, False, False]
    assert young.message.startswith("Waiting for room:")


def test_a_job_waiting_out_its_backoff_is_not_dispatched(dispatched: list) -> None:
    gpu(24)
    job = queue(10)
    Job.objects.filter(pk=job.pk).update(not_before=timezone.now() + dt.timedelta(minutes=1))

    assert dispatch() == 0
    assert dispatch_later(minutes=2) == 1


def dispatch_later(*, minutes: int) -> int:
    return services.jobs_dispatch(now=timezone.now() + dt.timedelta(minutes=minutes))


def test_a_smaller_job_backfills_a_device_the_waiting_head_cannot_use(dispatched: list) -> None:
    small, big = gpu(8), gpu(24)
    PlacementFactory(device=big, state=PlacementState.LOADED, pinned=True, reserved_bytes=10 * GIB)
    head = queue(20, priority=90)  # only the big device could ever hold it, and a pinned model is there
    later = queue(6, priority=10)

    assert dispatch() == 1

    head, later = refreshed(head, later)
    assert (head.reserved_bytes, later.device) == (0, small)


def test_a_later_job_never_takes_the_device_kept_for_the_waiting_head(dispatched: list) -> None:
    device = gpu(24)
    just_used = timezone.now()
    PlacementFactory(  # in use now, so not evicted yet; it will be idle one day
        device=device,
        state=PlacementState.LOADED,
        reserved_bytes=10 * GIB,
        loaded_at=just_used,
        last_used_at=just_used,
    )
    head = queue(20, priority=90)
    later = queue(6, priority=10)  # it would fit beside the busy model, but the head waits for that room

    assert dispatch() == 0

    (later,) = refreshed(later)
    assert later.reserved_bytes == 0
    assert f"is kept for job #{head.pk}, ahead of it in the queue" in later.message


def test_a_head_that_could_never_fit_beside_the_pinned_models_keeps_nothing(dispatched: list) -> None:
    device = gpu(24)
    PlacementFactory(device=device, state=PlacementState.LOADED, pinned=True, reserved_bytes=10 * GIB)
    head = queue(20, priority=90)  # 24 GiB less the pinned 10 GiB can never hold 20 GiB
    later = queue(1, priority=10)

    for _ in range(2):
        dispatch()

    head, later = refreshed(head, later)
    assert (later.device, later.reserved_bytes) == (device, GIB)
    assert head.reserved_bytes == 0
    assert (
        "no device could ever hold it beside the pinned models there, so none is kept for it" in head.message
    )


def test_a_pinned_job_goes_only_to_its_device(dispatched: list) -> None:
    gpu(80)
    pinned = gpu(24)
    job = queue(10, device=pinned)

    dispatch()

    (job,) = refreshed(job)
    assert job.device == pinned


def test_a_job_that_evicts_idle_models_holds_its_room_and_is_sent_once_they_are_gone(
    dispatched: list, django_capture_on_commit_callbacks: Any
) -> None:
    device = gpu(24)
    long_ago = timezone.now() - dt.timedelta(hours=1)
    idle = PlacementFactory(
        device=device,
        version=served(16),
        state=PlacementState.LOADED,
        reserved_bytes=16 * GIB,
        loaded_at=long_ago,
        last_used_at=long_ago,
    )
    job = queue(16)

    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch() == 0

    job, _ = refreshed(job, idle)
    idle.refresh_from_db()
    assert idle.state == PlacementState.UNLOADING
    assert (job.device, job.reserved_bytes, job.task_id) == (device, 16 * GIB, "")
    assert "waiting for 1 idle model to be unloaded" in job.message

    idle.state = PlacementState.UNLOADED
    idle.save(update_fields=["state"])
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch() == 1
    assert sent_jobs(dispatched) == [(job.pk, device.queue)]


def test_cancelling_a_reserved_job_lets_its_room_go(dispatched: list) -> None:
    device = gpu(24)
    job = queue(20)
    dispatch()

    services.job_cancel(job=job)

    assert placing.placement_load(version=served(10), device=device).device == device


def test_a_waiting_selftest_retry_is_sent_to_its_queue(
    dispatched: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = JobFactory(kind="selftest", task_id="", queue="default")

    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch() == 1

    assert sent_jobs(dispatched) == [(job.pk, "default")]


def running_fine_tune(device: Any, *, priority: int, gib: float) -> Job:
    return JobFactory(
        kind="fine_tune",
        state=JobState.RUNNING,
        device=device,
        reserved_bytes=int(gib * GIB),
        priority=priority,
        task_id="t-run",
        started_at=timezone.now(),
    )


def test_with_preemption_on_a_lower_priority_fine_tune_is_asked_to_yield(
    dispatched: list, settings: Any
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    low = running_fine_tune(device, priority=10, gib=20)
    head = queue(20, priority=90)

    assert dispatch() == 0

    (low,) = refreshed(low)
    assert low.preempt_requested_at is not None
    assert services.job_stop_asked(job_id=low.pk, task_id="t-run") == ("preempt", True)
    assert "yield its device to job" in low.events.get().message
    assert head.pk


def test_preemption_is_off_by_default(dispatched: list) -> None:
    low = running_fine_tune(gpu(24), priority=10, gib=20)
    queue(20, priority=90)

    dispatch()

    (low,) = refreshed(low)
    assert low.preempt_requested_at is None


def test_equal_priority_is_never_preempted(dispatched: list, settings: Any) -> None:
    settings.MOC_JOB_PREEMPT = True
    peer = running_fine_tune(gpu(24), priority=90, gib=20)
    queue(20, priority=90)

    dispatch()

    (peer,) = refreshed(peer)
    assert peer.preempt_requested_at is None
