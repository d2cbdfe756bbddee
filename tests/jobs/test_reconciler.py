"""The reconciler service against the database and the session Redis's worker heartbeats."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.core import redis_clients, workers
from apps.core.models import OutboxMessage
from apps.jobs import messages as job_messages
from apps.jobs import services
from apps.jobs.domain.kinds import ErrorClass
from apps.jobs.domain.states import JobState
from tests.jobs.factories import JobFactory
from tests.procs import free_port

pytestmark = pytest.mark.django_db
Broker = Callable[[str], list[dict[str, Any]]]


def heartbeat(hostname: str, queues: list[str], started_s_ago: float = 3600) -> None:
    workers.beat(redis_clients.redis_client(), hostname, queues, time.time() - started_s_ago)


def ago(seconds: int) -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=seconds)


def test_queued_job_whose_message_never_reached_the_broker_is_sent_again(
    django_capture_on_commit_callbacks: Any, broker: Broker
) -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(queued_at=ago(600), dispatched_at=None, task_id="lost")

    with django_capture_on_commit_callbacks(execute=True):
        counts = services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert counts["redispatch"] == 1
    assert [m["headers"]["id"] for m in broker("default")] == [job.task_id]
    assert job.task_id != "lost"
    assert job.dispatched_at > ago(5)


def test_queued_job_whose_send_may_still_be_on_its_way_is_left_alone() -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(queued_at=ago(10), dispatched_at=None, task_id="fresh")

    services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert job.task_id == "fresh"


def test_queued_job_the_broker_holds_is_not_sent_again_while_it_waits_behind_a_long_job() -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(queued_at=ago(6 * 3600), dispatched_at=ago(6 * 3600), task_id="waiting")

    counts = services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert (counts["redispatch"], job.task_id) == (0, "waiting")


def test_queued_job_the_broker_took_longer_ago_than_its_visibility_timeout_is_sent_again(
    settings: Any, django_capture_on_commit_callbacks: Any, broker: Broker
) -> None:
    heartbeat("celery@cpu", ["default"])
    overdue = ago(settings.MOC_VISIBILITY_TIMEOUT + 60)
    job = JobFactory(queued_at=overdue, dispatched_at=overdue, task_id="overdue")

    with django_capture_on_commit_callbacks(execute=True):
        counts = services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert counts["redispatch"] == 1
    assert [m["headers"]["id"] for m in broker("default")] == [job.task_id]


def test_sending_again_is_logged_on_the_job() -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(queued_at=ago(600), dispatched_at=None, task_id="lost")

    services.jobs_redispatch_stale(now=timezone.now())

    assert job.events.get().message.startswith("Sent again: its message never reached the broker in ")


def test_running_job_of_a_lost_worker_goes_back_to_its_queue(
    django_capture_on_commit_callbacks: Any, broker: Broker
) -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(
        state=JobState.RUNNING, worker="celery@dead", attempts=1, started_at=ago(600), task_id="t1"
    )

    with django_capture_on_commit_callbacks(execute=True):
        services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.QUEUED, 1)
    assert [m["headers"]["id"] for m in broker("default")] == [job.task_id]


def test_running_job_of_a_lost_worker_with_no_attempts_left_fails_as_worker_lost() -> None:
    job = JobFactory(state=JobState.RUNNING, worker="celery@dead", attempts=3, started_at=ago(600))

    services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.WORKER_LOST)
    assert job.error == "Gave up: worker 'celery@dead' was lost during attempt 3 of 3; no attempts left."


def test_running_job_of_a_live_worker_is_left_running() -> None:
    heartbeat("celery@gpu1", ["gpu.gpu1.0"])
    job = JobFactory(state=JobState.RUNNING, worker="celery@gpu1", attempts=1, started_at=ago(600))

    services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_cancelling_job_of_a_lost_worker_ends_cancelled() -> None:
    job = JobFactory(state=JobState.CANCELLING, worker="celery@dead", attempts=1, started_at=ago(600))

    services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_reconciler_does_nothing_when_it_cannot_read_heartbeats() -> None:
    job = JobFactory(state=JobState.RUNNING, worker="celery@gpu1", attempts=1, started_at=ago(600))

    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        counts = services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert counts == {}
    assert job.state == JobState.RUNNING


def test_queued_job_whose_message_waits_in_the_outbox_is_not_sent_again() -> None:
    heartbeat("celery@cpu", ["default"])
    job = JobFactory(queued_at=ago(600), dispatched_at=None, task_id="waiting")  # the broker was away
    OutboxMessage.objects.create(task_id="waiting", task_name=job_messages.JOB_RUN, args=[job.pk])

    counts = services.jobs_redispatch_stale(now=timezone.now())

    job.refresh_from_db()
    assert counts.get("redispatch", 0) == 0
    assert job.task_id == "waiting"
    assert OutboxMessage.objects.count() == 1
