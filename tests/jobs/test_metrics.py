"""Jobs in /metrics: jobs waiting per kind and queue, and jobs that failed in the last hour."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from tests.fleet.test_metrics import samples, value
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db
WAITING = "moc_jobs_waiting"
FAILURES = "moc_job_failures_last_hour"


def test_jobs_waiting_are_counted_by_kind_and_queue(scrape: Callable[[], str]) -> None:
    JobFactory.create_batch(2, kind=JobKind.EVALUATE, queue="gpu.box.0", state=JobState.QUEUED)
    JobFactory(kind=JobKind.EVALUATE, queue="default", state=JobState.QUEUED)
    JobFactory(kind=JobKind.EVALUATE, queue="gpu.box.0", state=JobState.RUNNING)
    JobFactory(kind=JobKind.SELFTEST, queue="default", state=JobState.SUCCEEDED)

    text = scrape()

    assert value(text, WAITING, kind="evaluate", queue="gpu.box.0") == 2
    assert value(text, WAITING, kind="evaluate", queue="default") == 1
    assert samples(text, WAITING, kind="selftest") == []


def test_failures_count_jobs_that_ended_failed_in_the_last_hour(scrape: Callable[[], str]) -> None:
    now = timezone.now()
    JobFactory(kind=JobKind.BENCHMARK, state=JobState.FAILED, finished_at=now - timedelta(minutes=5))
    JobFactory(kind=JobKind.BENCHMARK, state=JobState.FAILED, finished_at=now - timedelta(minutes=50))
    JobFactory(kind=JobKind.BENCHMARK, state=JobState.FAILED, finished_at=now - timedelta(hours=2))
    JobFactory(kind=JobKind.BENCHMARK, state=JobState.SUCCEEDED, finished_at=now)

    text = scrape()

    assert value(text, FAILURES, kind="benchmark") == 2
    # Every kind has its series, so a rule on it sees the count fall back to 0.
    assert value(text, FAILURES, kind="evaluate") == 0
    assert {s.labels["kind"] for s in samples(text, FAILURES)} == {k.value for k in JobKind}
