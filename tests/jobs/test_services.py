from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from apps.core import audit, dispatch, redis_clients, workers
from apps.core.domain.statemachine import InvalidTransition
from apps.core.models import AuditEvent
from apps.jobs import runners, services
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from tests.jobs.factories import JobFactory
from tests.procs import free_port

pytestmark = pytest.mark.django_db
Broker = Callable[[str], list[dict[str, Any]]]


def heartbeat(hostname: str, queues: list[str]) -> None:
    workers.beat(redis_clients.redis_client(), hostname, queues, time.time())


def test_job_create_queues_a_selftest() -> None:
    job = services.job_create(kind=JobKind.SELFTEST)

    assert (job.state, job.queue, job.attempts, job.max_attempts) == (JobState.QUEUED, "default", 0, 3)


def test_job_create_sends_the_task_to_the_jobs_queue_once_committed(
    django_capture_on_commit_callbacks: Any, broker: Broker
) -> None:
    heartbeat("celery@node1", ["gpu.node1.0"])
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind=JobKind.SELFTEST, queue="gpu.node1.0")

    [message] = broker("gpu.node1.0")
    assert message["headers"]["task"] == "apps.jobs.tasks.job_run"
    assert message["headers"]["id"] == job.task_id


def test_job_create_sends_nothing_before_the_transaction_commits(
    django_capture_on_commit_callbacks: Any, broker: Broker
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        services.job_create(kind=JobKind.SELFTEST)

    assert broker("default") == []


def test_job_create_records_when_the_broker_took_its_message(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind=JobKind.SELFTEST)

    job.refresh_from_db()
    assert job.dispatched_at is not None
    assert job.dispatched_at >= job.queued_at


def test_job_create_leaves_dispatched_at_empty_until_the_transaction_commits() -> None:
    job = services.job_create(kind=JobKind.SELFTEST)

    job.refresh_from_db()
    assert job.dispatched_at is None
    assert job.task_id


def test_a_send_the_broker_refused_leaves_dispatched_at_empty_for_the_reconciler(
    django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(dispatch, "send", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind=JobKind.SELFTEST)

    job.refresh_from_db()
    assert job.dispatched_at is None


@pytest.mark.parametrize(("priority", "broker_priority"), [(100, 0), (50, 4), (0, 9)])
def test_job_create_sends_its_priority_as_celery_redis_priority(
    django_capture_on_commit_callbacks: Any, broker: Broker, priority: int, broker_priority: int
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.job_create(kind=JobKind.SELFTEST, priority=priority)

    [message] = broker("default")
    assert message["properties"]["priority"] == broker_priority


def test_jobs_waiting_in_a_queue_are_handed_out_highest_priority_first(
    django_capture_on_commit_callbacks: Any, broker: Broker
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        jobs = {p: services.job_create(kind=JobKind.SELFTEST, priority=p) for p in (10, 95, 50)}

    assert [m["headers"]["id"] for m in broker("default")] == [jobs[p].task_id for p in (95, 50, 10)]


def test_job_create_refuses_a_queue_no_live_worker_consumes_naming_the_live_ones() -> None:
    heartbeat("celery@gpu1", ["default", "gpu.gpu1.0"])

    with pytest.raises(ValidationError) as caught:
        services.job_create(kind=JobKind.SELFTEST, queue="nobody.listens")

    [message] = caught.value.message_dict["queue"]
    assert "'nobody.listens'" in message
    assert "live queues: 'gpu.gpu1.0'" in message
    assert not Job.objects.exists()


def test_job_create_accepts_a_queue_a_live_worker_consumes() -> None:
    heartbeat("celery@gpu1", ["gpu.gpu1.0"])

    assert services.job_create(kind=JobKind.SELFTEST, queue="gpu.gpu1.0").queue == "gpu.gpu1.0"


def test_job_create_accepts_the_default_queue_with_no_live_worker() -> None:
    assert services.job_create(kind=JobKind.SELFTEST, queue="default").queue == "default"


def test_job_create_accepts_any_queue_when_redis_cannot_say_who_consumes_it() -> None:
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        job = services.job_create(kind=JobKind.SELFTEST, queue="gpu.unknown.0")

    assert job.queue == "gpu.unknown.0"


@pytest.mark.parametrize("kind", [JobKind.FINE_TUNE, JobKind.EVALUATE, JobKind.BENCHMARK, JobKind.CONVERT])
def test_job_create_refuses_kinds_without_a_runner(kind: JobKind, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(runners.RUNNERS, kind.value, raising=False)

    with pytest.raises(ValidationError) as caught:
        services.job_create(kind=kind)

    assert f"no runner for kind {kind} yet" in caught.value.message_dict["kind"][0]
    assert not Job.objects.exists()


def test_job_create_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValidationError) as caught:
        services.job_create(kind="mine_bitcoin")

    assert "Unknown kind" in caught.value.message_dict["kind"][0]


def test_job_create_names_bad_params_and_queue() -> None:
    with pytest.raises(ValidationError) as caught:
        services.job_create(kind=JobKind.SELFTEST, queue="no spaces", params={"checks": ["disk"]})

    assert set(caught.value.message_dict) == {"queue", "params"}


def test_job_start_takes_a_queued_job_and_counts_the_attempt() -> None:
    job = JobFactory()

    assert services.job_start(job_id=job.pk, worker="celery@w1", task_id="t1") is True

    job.refresh_from_db()
    assert (job.state, job.worker, job.task_id, job.attempts) == (JobState.RUNNING, "celery@w1", "t1", 1)
    assert job.started_at is not None


def test_job_start_is_idempotent_a_second_call_returns_false() -> None:
    job = JobFactory()
    services.job_start(job_id=job.pk, worker="celery@w1", task_id="t1")

    assert services.job_start(job_id=job.pk, worker="celery@w2", task_id="t2") is False
    job.refresh_from_db()
    assert (job.worker, job.attempts) == ("celery@w1", 1)


def test_job_start_refuses_a_cancelled_job() -> None:
    job = JobFactory(state=JobState.CANCELLED)

    assert services.job_start(job_id=job.pk, worker="celery@w1", task_id="t1") is False


def test_job_start_refuses_a_job_that_no_longer_exists() -> None:
    assert services.job_start(job_id=999_999, worker="celery@w1", task_id="t1") is False


def test_job_start_takes_over_a_redelivered_message_of_a_dead_worker_as_a_new_attempt() -> None:
    job = JobFactory(state=JobState.RUNNING, worker="celery@dead", task_id="t1", attempts=1)

    assert services.job_start(job_id=job.pk, worker="celery@w2", task_id="t1") is True

    job.refresh_from_db()
    assert (job.state, job.worker, job.attempts) == (JobState.RUNNING, "celery@w2", 2)


def test_job_start_fails_a_redelivered_job_with_no_attempts_left() -> None:
    job = JobFactory(state=JobState.RUNNING, worker="celery@dead", task_id="t1", attempts=3, max_attempts=3)

    assert services.job_start(job_id=job.pk, worker="celery@w2", task_id="t1") is False

    job.refresh_from_db()
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.WORKER_LOST)


def test_job_start_completes_the_cancel_of_a_redelivered_cancelling_job() -> None:
    job = JobFactory(state=JobState.CANCELLING, worker="celery@dead", task_id="t1", attempts=1)

    assert services.job_start(job_id=job.pk, worker="celery@w2", task_id="t1") is False

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_job_progress_records_the_fraction_and_message() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t1")

    assert services.job_progress(job_id=job.pk, task_id="t1", progress=0.5, message="half way") is True

    job.refresh_from_db()
    assert (job.progress, job.message) == (0.5, "half way")


def test_job_progress_tells_the_runner_to_stop_once_a_cancel_was_asked() -> None:
    job = JobFactory(state=JobState.CANCELLING, task_id="t1")

    assert services.job_progress(job_id=job.pk, task_id="t1", progress=0.5) is False


def test_job_progress_tells_a_task_that_lost_the_job_to_stop() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t2")

    assert services.job_progress(job_id=job.pk, task_id="t1", progress=0.5) is False


def test_job_finish_records_success_with_the_result() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t1")

    assert services.job_finish(job_id=job.pk, task_id="t1", state=JobState.SUCCEEDED, result={"ok": True})

    job.refresh_from_db()
    assert (job.state, job.progress, job.result) == (JobState.SUCCEEDED, 1.0, {"ok": True})
    assert job.finished_at is not None


def test_job_finish_records_failure_with_its_class_and_error() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t1")

    services.job_finish(job_id=job.pk, task_id="t1", state=JobState.FAILED, error="ValueError: boom")

    job.refresh_from_db()
    assert (job.state, job.error_class, job.error) == (
        JobState.FAILED,
        ErrorClass.RUNNER_ERROR,
        "ValueError: boom",
    )


def test_job_finish_ignores_a_task_that_no_longer_owns_the_job() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t2")

    assert services.job_finish(job_id=job.pk, task_id="t1", state=JobState.SUCCEEDED) is False
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_job_finish_logs_how_the_job_ended() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t1")

    services.job_finish(job_id=job.pk, task_id="t1", state=JobState.SUCCEEDED)

    assert list(job.events.values_list("message", flat=True)) == ["Succeeded."]


def test_job_cancel_of_a_queued_job_cancels_it_at_once() -> None:
    job = services.job_cancel(job=JobFactory())

    assert job.state == JobState.CANCELLED
    assert job.finished_at is not None


def test_job_cancel_of_a_running_job_asks_it_to_stop() -> None:
    job = services.job_cancel(job=JobFactory(state=JobState.RUNNING))

    assert job.state == JobState.CANCELLING


def test_job_cancel_twice_while_cancelling_changes_nothing() -> None:
    job = services.job_cancel(job=JobFactory(state=JobState.CANCELLING))

    assert job.state == JobState.CANCELLING


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_job_cancel_of_a_finished_job_is_an_invalid_transition(state: JobState) -> None:
    with pytest.raises(InvalidTransition):
        services.job_cancel(job=JobFactory(state=state))


def test_job_cancel_uses_the_state_in_the_database_not_a_stale_copy() -> None:
    job = JobFactory()
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING)

    assert services.job_cancel(job=job).state == JobState.CANCELLING


def test_job_cancel_is_audited_during_a_request(
    rf: Any, operator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    request = rf.post("/api/v1/jobs/1/cancel/")
    request.user = operator
    token = audit.bind_request(request)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            job = services.job_cancel(job=JobFactory())
    finally:
        audit.unbind_request(token)

    event = AuditEvent.objects.get(action="cancel")
    assert (event.object_id, event.changes) == (str(job.pk), {"state": ["queued", "cancelled"]})


def test_job_poisoned_fails_the_running_job_of_that_task() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t1")

    assert services.job_poisoned(job_id=job.pk, task_id="t1") is True

    job.refresh_from_db()
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.POISONED)


def test_job_poisoned_leaves_a_job_that_moved_on_to_another_task() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t2")

    assert services.job_poisoned(job_id=job.pk, task_id="t1") is False


def test_job_crashed_fails_the_job_its_task_and_worker_run_as_internal() -> None:
    job = JobFactory(state=JobState.RUNNING, task_id="t1", worker="celery@w1")

    assert services.job_crashed(
        job_id=job.pk, task_id="t1", worker="celery@w1", error="OperationalError: gone"
    )

    job.refresh_from_db()
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.INTERNAL)
    assert job.error == "MOC failed while running it: OperationalError: gone"


@pytest.mark.parametrize(
    ("state", "task_id", "worker"),
    [
        (JobState.SUCCEEDED, "t1", "celery@w1"),
        (JobState.RUNNING, "t2", "celery@w1"),
        (JobState.RUNNING, "t1", "celery@dead"),
    ],
)
def test_job_crashed_leaves_a_job_that_is_over_or_not_this_runs(
    state: JobState, task_id: str, worker: str
) -> None:
    job = JobFactory(state=state, task_id=task_id, worker=worker)

    assert services.job_crashed(job_id=job.pk, task_id="t1", worker="celery@w1", error="boom") is False
    job.refresh_from_db()
    assert job.state == state
