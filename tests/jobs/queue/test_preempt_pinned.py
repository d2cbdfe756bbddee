"""Checkpoint-then-preempt for a pinned serving load (apps.serving.signals.room_wanted, answered by
jobs.receivers), and a job's pinned device kept each time it waits again; with the real database,
ledger and scheduler."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from apps.core.domain.roles import Role
from apps.jobs import services
from apps.jobs.domain import queueing
from apps.jobs.domain.queueing import PINNED_LOAD_PRIORITY, Running, Waiting, preemption_victim
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.services.load_holds import load_holds
from apps.serving import placing
from apps.serving.models import ServingProfile
from tests.fleet.factories import GIB
from tests.jobs.factories import JobFactory
from tests.jobs.queue.conftest import dataset, fine_tune, gpu, lm, served

pytestmark = pytest.mark.django_db

ASKED = "a fine-tune was asked to yield its memory; try again in a few seconds"


def running_fine_tune(device: Any, *, gib: float, priority: int = 10, task_id: str = "t-run") -> Job:
    """A fine-tune running on `device`, holding `gib` GiB there (what it asks again once it waits)."""
    base = lm()
    return JobFactory(
        kind="fine_tune",
        params=fine_tune(base, dataset(), memory_bytes=int(gib * GIB)),
        model_version=base,
        state=JobState.RUNNING,
        device=device,
        reserved_bytes=int(gib * GIB),
        priority=priority,
        task_id=task_id,
        started_at=timezone.now(),
        attempts=1,
    )


def refused_load(**kwargs: Any) -> str:
    with pytest.raises(placing.PlacementRefused) as refused:
        placing.placement_load(**kwargs)
    return str(refused.value)


def dispatch() -> int:
    return services.jobs_dispatch(now=timezone.now())


def test_a_pinned_load_refused_for_room_asks_even_a_top_priority_fine_tune_to_yield(
    dispatched: list, settings: Any
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20, priority=100)
    version = served(10)

    message = refused_load(version=version, device=device, pinned=True)

    tuning.refresh_from_db()
    assert "cannot be placed: needs 10.0 GiB" in message
    assert ASKED in message.lower()
    # Written although the load's own transaction rolled back: the refusal is sent after it.
    assert tuning.preempt_requested_at is not None
    assert services.job_stop_asked(job_id=tuning.pk, task_id="t-run") == ("preempt", True)
    assert f"yield its device to a pinned load of {version}" in tuning.events.get().message


def test_the_fine_tune_that_yielded_keeps_out_of_the_queue_so_the_load_tried_again_fits(
    dispatched: list, settings: Any
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)
    version = served(10)
    refused_load(version=version, device=device, pinned=True)

    assert services.job_yield(job_id=tuning.pk, task_id="t-run", reason="preempt")
    dispatch()

    tuning.refresh_from_db()
    assert (tuning.state, tuning.reserved_bytes, tuning.device) == (JobState.QUEUED, 0, None)
    held_for = (tuning.not_before - timezone.now()).total_seconds()
    assert queueing.LOAD_HOLD_S - 5 < held_for <= queueing.LOAD_HOLD_S
    placement = placing.placement_load(version=version, device=device, pinned=True)
    assert (placement.device, placement.pinned) == (device, True)

    # Once the hold is over it waits for room like any job (the pinned load is never evicted).
    Job.objects.filter(pk=tuning.pk).update(not_before=timezone.now() - dt.timedelta(seconds=1))
    assert dispatch() == 0
    tuning.refresh_from_db()
    assert tuning.reserved_bytes == 0
    assert "Waiting for room" in tuning.message


def evaluation_waiting(gib: float, *, priority: int) -> Job:
    return services.job_create(
        kind="evaluate",
        params={"version": lm().pk, "dataset": dataset().pk, "memory_bytes": int(gib * GIB)},
        wait_for_room=True,
        priority=priority,
    )


def test_the_room_a_fine_tune_yields_to_a_pinned_load_is_held_for_it_not_given_to_a_waiting_job(
    dispatched: list, settings: Any
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)
    other = evaluation_waiting(16, priority=5)  # fits once the fine-tune is gone, but not beside the load
    dispatch()
    version = served(10)
    refused_load(version=version, device=device, pinned=True)

    assert services.job_yield(job_id=tuning.pk, task_id="t-run", reason="preempt")
    dispatch()

    other.refresh_from_db()
    assert (other.reserved_bytes, other.device) == (0, None)
    assert "10.0 GiB held for a pinned serving load" in other.message
    placement = placing.placement_load(version=version, device=device, pinned=True)
    assert placement.device == device


def test_a_job_that_fits_beside_the_held_room_still_runs_there(dispatched: list, settings: Any) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)
    version = served(10)
    refused_load(version=version, device=device, pinned=True)
    assert services.job_yield(job_id=tuning.pk, task_id="t-run", reason="preempt")
    small = evaluation_waiting(8, priority=5)

    dispatch()

    small.refresh_from_db()
    assert (small.device, small.reserved_bytes) == (device, 8 * GIB)
    placing.placement_load(version=version, device=device, pinned=True)  # 24 - 8 still holds 10


def test_the_hold_goes_once_the_pinned_load_is_placed_and_lapses_by_itself(
    dispatched: list, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)
    version = served(10)
    refused_load(version=version, device=device, pinned=True)
    [(held, left_s)] = load_holds([device.pk]).values()
    assert held == 10 * GIB
    assert queueing.LOAD_HOLD_S - 5 < left_s <= queueing.LOAD_HOLD_S
    assert services.job_yield(job_id=tuning.pk, task_id="t-run", reason="preempt")

    with django_capture_on_commit_callbacks(execute=True):
        placing.placement_load(version=version, device=device, pinned=True)

    assert load_holds([device.pk]) == {}


def test_a_load_its_serving_profile_pins_asks_too(dispatched: list, settings: Any) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)
    version = served(10)
    ServingProfile.objects.create(version=version, pinned=True)

    assert ASKED in refused_load(version=version, device=device).lower()

    tuning.refresh_from_db()
    assert tuning.preempt_requested_at is not None


def test_without_preemption_a_pinned_load_is_refused_and_nothing_yields(dispatched: list) -> None:
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)

    message = refused_load(version=served(10), device=device, pinned=True)

    tuning.refresh_from_db()
    assert "yield" not in message
    assert (tuning.preempt_requested_at, tuning.not_before) == (None, None)


@pytest.mark.parametrize(
    "load",
    [
        pytest.param({"pinned": False}, id="unpinned"),
        pytest.param({}, id="no-profile"),
        pytest.param({"pinned": True, "evict": False}, id="pinned-but-may-not-evict"),
    ],
)
def test_a_load_that_is_not_pinned_or_may_not_evict_never_preempts(
    dispatched: list, settings: Any, load: dict[str, Any]
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)

    message = refused_load(version=served(10), device=device, **load)

    tuning.refresh_from_db()
    assert "yield" not in message
    assert tuning.preempt_requested_at is None


def test_a_pinned_load_no_room_let_go_could_fit_never_preempts(dispatched: list, settings: Any) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    tuning = running_fine_tune(device, gib=20)

    message = refused_load(version=served(30), device=device, pinned=True)

    tuning.refresh_from_db()
    assert "the largest device" in message
    assert "yield" not in message
    assert tuning.preempt_requested_at is None


def test_only_a_fine_tune_whose_room_would_be_enough_is_asked_on_the_devices_the_load_may_use(
    dispatched: list, settings: Any
) -> None:
    settings.MOC_JOB_PREEMPT = True
    small, other = gpu(24), gpu(24)
    too_small = running_fine_tune(small, gib=4, task_id="t-small")
    JobFactory(kind="evaluate", state=JobState.RUNNING, device=small, reserved_bytes=18 * GIB, priority=1)
    elsewhere = running_fine_tune(other, gib=20, task_id="t-other")

    message = refused_load(version=served(10), device=small, pinned=True)

    too_small.refresh_from_db()
    elsewhere.refresh_from_db()
    assert "yield" not in message
    assert (too_small.preempt_requested_at, elsewhere.preempt_requested_at) == (None, None)


def test_one_fine_tune_yields_at_a_time_and_the_next_try_says_it_is_on_its_way(
    dispatched: list, settings: Any
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    first = running_fine_tune(device, gib=10, task_id="t-1")
    second = running_fine_tune(device, gib=10, task_id="t-2")
    version = served(12)

    assert ASKED in refused_load(version=version, device=device, pinned=True).lower()
    again = refused_load(version=version, device=device, pinned=True)

    first.refresh_from_db()
    second.refresh_from_db()
    assert [first.preempt_requested_at is None, second.preempt_requested_at is None].count(False) == 1
    assert "is yielding its memory; try again in a few seconds" in again


def test_the_api_answers_409_saying_a_fine_tune_was_asked_to_yield(
    dispatched: list, settings: Any, client_as: Callable[[Role | None], Any]
) -> None:
    settings.MOC_JOB_PREEMPT = True
    device = gpu(24)
    running_fine_tune(device, gib=20)

    response = client_as(Role.OPERATOR).post(
        "/api/v1/placements/",
        {"version": served(10).pk, "device": device.pk, "pinned": True},
        format="json",
    )

    assert response.status_code == 409
    assert ASKED in str(response.json()).lower()


def test_the_rule_weighs_each_device_by_what_the_want_needs_there() -> None:
    now = timezone.now()
    on = [
        Running(id=1, priority=100, device_id=1, reserved_bytes=8 * GIB, started_at=now, preemptible=True),
        Running(id=2, priority=100, device_id=2, reserved_bytes=8 * GIB, started_at=now, preemptible=True),
    ]
    want = Waiting(
        id=0,
        priority=PINNED_LOAD_PRIORITY,
        queued_at=now,
        need_bytes=20 * GIB,
        need_on={1: 20 * GIB, 2: 10 * GIB},
    )

    assert preemption_victim(want, on, {1: 4 * GIB, 2: 4 * GIB}).id == 2  # type: ignore[union-attr]


# A job pinned to a device keeps its pin across requeues.


def queue_pinned(gib: float, device: Any) -> Job:
    return services.job_create(
        kind="fine_tune",
        params=fine_tune(lm(), dataset(), memory_bytes=int(gib * GIB)),
        device=device,
        wait_for_room=True,
    )


def test_a_pinned_job_that_yields_is_placed_again_on_its_pinned_device_only(dispatched: list) -> None:
    gpu(24)  # the best fit for 10 GiB, were it not pinned
    pinned = gpu(80)
    job = queue_pinned(10, pinned)
    assert (job.pinned_device, job.device) == (pinned, None)

    dispatch()
    job.refresh_from_db()
    assert job.device == pinned
    assert services.job_start(job_id=job.pk, worker="w@gpu", task_id=job.task_id)
    assert services.job_yield(job_id=job.pk, task_id=job.task_id, reason="preempt")
    job.refresh_from_db()
    assert (job.state, job.device, job.pinned_device) == (JobState.QUEUED, None, pinned)

    dispatch()

    job.refresh_from_db()
    assert (job.device, job.reserved_bytes) == (pinned, 10 * GIB)


def test_a_pinned_job_waits_for_its_device_even_when_another_has_room(dispatched: list) -> None:
    free = gpu(24)
    pinned = gpu(24)
    running_fine_tune(pinned, gib=20)
    job = queue_pinned(10, pinned)

    dispatch()

    job.refresh_from_db()
    assert (job.device, job.reserved_bytes) == (None, 0)
    assert "Waiting for room" in job.message
    unpinned = services.job_create(
        kind="fine_tune", params=fine_tune(lm(), dataset(), memory_bytes=10 * GIB), wait_for_room=True
    )
    dispatch()
    unpinned.refresh_from_db()
    assert unpinned.device == free


def test_a_retry_of_a_pinned_job_is_pinned_to_the_same_device(dispatched: list) -> None:
    gpu(24)
    pinned = gpu(80)
    job = queue_pinned(10, pinned)
    services.job_cancel(job=job)

    retry = services.job_retry(job=job, created_by=None)

    assert (retry.pinned_device, retry.retry_of) == (pinned, job)


def test_the_api_shows_the_pinned_device(dispatched: list, client_as: Callable[[Role | None], Any]) -> None:
    pinned = gpu(24)
    job = queue_pinned(10, pinned)

    body = client_as(Role.VIEWER).get(f"/api/v1/jobs/{job.pk}/").json()

    assert body["pinned_device"]["id"] == pinned.pk
    assert body["device"] is None
