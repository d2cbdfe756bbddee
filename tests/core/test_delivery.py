"""Delivery accounting: lost deliveries are counted and poisoned past the limit; finished
tasks are not run again; direct and eager calls bypass the accounting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Task
from celery.exceptions import MaxRetriesExceededError, Retry

from apps.core import tasks
from apps.core.delivery import DurableTask, delivery_begin, delivery_finish
from apps.core.domain.states import DeliveryState
from apps.core.models import TaskDelivery
from moc_site.celery import app
from tests.core.factories import TaskDeliveryFactory

pytestmark = pytest.mark.django_db


def deliver(task_id: str = "t-1", worker: str = "celery@a") -> bool:
    return delivery_begin(
        task_id=task_id,
        task_name="apps.jobs.tasks.job_run",
        queue="default",
        worker=worker,
        args=[7],
        kwargs={},
    )


def row(task_id: str = "t-1") -> TaskDelivery:
    return TaskDelivery.objects.get(task_id=task_id)


@pytest.fixture
def max_deliveries(settings: Any) -> int:
    settings.MOC_TASK_MAX_DELIVERIES = 2
    return 2


def test_a_first_delivery_runs_and_is_recorded() -> None:
    assert deliver(worker="celery@a") is True

    first = row()
    assert (first.state, first.deliveries, first.worker, first.queue) == ("running", 1, "celery@a", "default")
    assert (first.task_name, first.args, first.kwargs) == ("apps.jobs.tasks.job_run", [7], {})


def test_a_redelivery_while_running_counts_as_lost_and_runs_again(max_deliveries: int) -> None:
    deliver(worker="celery@a")

    assert deliver(worker="celery@b") is True

    again = row()
    assert (again.state, again.deliveries, again.worker) == ("running", 2, "celery@b")


def test_past_the_limit_of_lost_deliveries_the_task_is_poisoned(max_deliveries: int) -> None:
    # The first delivery, then one redelivery per worker that died running it.
    for _ in range(max_deliveries):
        assert deliver() is True

    assert deliver() is False

    poisoned = row()
    assert poisoned.state == "poisoned"
    assert poisoned.finished_at is not None
    assert poisoned.error == "poisoned: its worker died 2 times running it (limit 2); it is not run again"


def test_a_poisoned_task_is_never_run_again(max_deliveries: int) -> None:
    TaskDeliveryFactory(task_id="t-1", state=DeliveryState.POISONED, deliveries=3)

    assert deliver() is False
    assert row().deliveries == 3


@pytest.mark.parametrize("state", [DeliveryState.SUCCEEDED, DeliveryState.FAILED])
def test_a_delivery_of_a_finished_task_is_skipped(state: DeliveryState) -> None:
    TaskDeliveryFactory(task_id="t-1", state=state, deliveries=1)

    assert deliver() is False

    assert (row().state, row().deliveries) == (state, 1)


def test_a_retrying_task_runs_again_without_counting_as_lost(settings: Any) -> None:
    settings.MOC_TASK_MAX_DELIVERIES = 1
    deliver()

    for _ in range(3):
        delivery_finish(task_id="t-1", state=DeliveryState.RETRYING)
        assert deliver() is True

    assert row().state == "running"


def test_a_retried_task_whose_worker_dies_once_is_not_poisoned(settings: Any) -> None:
    settings.MOC_TASK_MAX_DELIVERIES = 3
    deliver()
    for _ in range(3):
        delivery_finish(task_id="t-1", state=DeliveryState.RETRYING)
        deliver()

    assert deliver() is True
    assert row().state == "running"


def test_finishing_records_the_outcome() -> None:
    deliver()

    delivery_finish(task_id="t-1", state=DeliveryState.FAILED, error="ValueError: boom")

    done = row()
    assert (done.state, done.error) == ("failed", "ValueError: boom")
    assert done.finished_at is not None


def test_finishing_as_retrying_leaves_the_task_unfinished() -> None:
    deliver()

    delivery_finish(task_id="t-1", state=DeliveryState.RETRYING)

    assert (row().state, row().finished_at) == ("retrying", None)


def test_finishing_does_not_overwrite_a_poisoned_row() -> None:
    TaskDeliveryFactory(task_id="t-1", state=DeliveryState.POISONED, error="poisoned: …")

    delivery_finish(task_id="t-1", state=DeliveryState.SUCCEEDED)

    assert row().state == "poisoned"


def test_a_direct_call_runs_without_a_delivery_row() -> None:
    result = tasks.ping("direct")

    assert (result["pong"], result["note"]) == (True, "direct")
    assert not TaskDelivery.objects.exists()


def test_an_eager_apply_runs_without_a_delivery_row() -> None:
    result = tasks.ping.apply(args=["eager"]).get()

    assert result["note"] == "eager"
    assert not TaskDelivery.objects.exists()


class Recorder:
    """What the test task was asked to do and what it did."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ran: list[Any] = []
        self.poisoned: list[Any] = []
        self.fail = False


RECORDER = Recorder()


class _RecordingTask(DurableTask):
    def on_poisoned(self, *args: Any, **kwargs: Any) -> None:
        RECORDER.poisoned.append(args)


@app.task(base=_RecordingTask, name="tests.core.test_delivery.record")
def record(value: int) -> int:
    if RECORDER.fail:
        raise ValueError("boom")
    RECORDER.ran.append(value)
    return value * 2


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    RECORDER.reset()
    yield RECORDER
    RECORDER.reset()


@app.task(base=DurableTask, bind=True, name="tests.core.test_delivery.retry_now")
def retry_now(self: Task, value: int) -> None:
    raise self.retry(countdown=0)


def run_as_worker(task: Task, task_id: str, *args: Any, retries: int = 0) -> Any:
    """Calls the task the way a worker does: with a request that has an id and a hostname."""
    task.push_request(
        id=task_id,
        called_directly=False,
        is_eager=False,
        hostname="celery@w1",
        delivery_info={"routing_key": "gpu.local.0"},
        retries=retries,
    )
    try:
        return task(*args)
    finally:
        task.pop_request()


@pytest.fixture
def as_worker() -> Callable[..., Any]:
    return lambda task_id, *args: run_as_worker(record, task_id, *args)


def test_a_worker_delivery_runs_the_body_and_records_success(recorder: Recorder, as_worker: Callable) -> None:
    assert as_worker("w-1", 21) == 42

    done = row("w-1")
    assert recorder.ran == [21]
    assert (done.state, done.deliveries, done.queue, done.worker) == (
        "succeeded",
        1,
        "gpu.local.0",
        "celery@w1",
    )
    assert done.task_name == "tests.core.test_delivery.record"


def test_a_worker_delivery_that_raises_records_the_failure(recorder: Recorder, as_worker: Callable) -> None:
    recorder.fail = True

    with pytest.raises(ValueError, match="boom"):
        as_worker("w-1", 21)

    assert (row("w-1").state, row("w-1").error) == ("failed", "ValueError: boom")


def test_a_poisoned_delivery_skips_the_body_and_calls_on_poisoned(
    recorder: Recorder, as_worker: Callable, max_deliveries: int
) -> None:
    for _ in range(max_deliveries):
        deliver("w-1")

    assert as_worker("w-1", 21) is None

    assert recorder.ran == []
    assert recorder.poisoned == [(21,)]
    assert row("w-1").state == "poisoned"


def test_a_redelivered_finished_task_skips_the_body_without_poisoning(
    recorder: Recorder, as_worker: Callable
) -> None:
    TaskDeliveryFactory(task_id="w-1", state=DeliveryState.SUCCEEDED)

    assert as_worker("w-1", 21) is None

    assert (recorder.ran, recorder.poisoned) == ([], [])


def test_a_retry_started_at_once_by_another_worker_is_not_a_lost_delivery(
    monkeypatch: pytest.MonkeyPatch, max_deliveries: int
) -> None:
    started: list[bool] = []

    def another_worker_starts_it(*args: Any, **kwargs: Any) -> None:
        started.append(deliver("w-1", worker="celery@w2"))

    monkeypatch.setattr(type(app.tasks[retry_now.name]), "apply_async", another_worker_starts_it)
    deliver("w-1")  # a worker died on it once: one more lost delivery poisons it

    with pytest.raises(Retry):
        run_as_worker(retry_now, "w-1", 1)
    delivery_finish(task_id="w-1", state=DeliveryState.SUCCEEDED)  # the second worker's attempt

    assert started == [True]
    assert row("w-1").state == "succeeded"


def test_a_task_out_of_retries_is_recorded_as_failed() -> None:
    with pytest.raises(MaxRetriesExceededError):
        run_as_worker(retry_now, "w-1", 1, retries=retry_now.max_retries + 1)

    assert row("w-1").state == "failed"
    assert row("w-1").error.startswith("MaxRetriesExceededError")
