from __future__ import annotations

import datetime as dt
import time

import pytest

from apps.core import redis_clients, workers
from apps.jobs import selectors
from apps.jobs.domain.states import JobState
from tests.jobs.factories import JobFactory


def test_queue_choices_offer_default_then_the_queues_live_workers_consume() -> None:
    workers.beat(
        redis_clients.redis_client(), "celery@gpu1", ["gpu.gpu1.1", "gpu.gpu1.0", "default"], time.time()
    )

    assert selectors.queue_choices() == ["default", "gpu.gpu1.0", "gpu.gpu1.1"]


@pytest.mark.django_db
def test_overview_card_counts_running_and_queued_jobs() -> None:
    JobFactory(state=JobState.RUNNING)
    JobFactory(state=JobState.CANCELLING)
    JobFactory()

    [card] = selectors.overview_cards()

    assert (card["label"], card["value"], card["url"]) == ("Jobs running", 2, "/jobs/")
    assert card["hint"].startswith("1 queued")


@pytest.mark.django_db
def test_jobs_finished_per_hour_counts_each_outcome_in_its_hour() -> None:
    now = dt.datetime(2026, 11, 23, 15, 30, tzinfo=dt.UTC)
    JobFactory(state=JobState.SUCCEEDED, finished_at=now - dt.timedelta(minutes=10))
    JobFactory(state=JobState.SUCCEEDED, finished_at=now - dt.timedelta(minutes=20))
    JobFactory(state=JobState.FAILED, finished_at=now - dt.timedelta(hours=2))
    JobFactory(state=JobState.SUCCEEDED, finished_at=now - dt.timedelta(hours=30))  # outside the window
    JobFactory(state=JobState.RUNNING)

    activity = selectors.jobs_finished_per_hour(now=now, hours=24)

    assert len(activity["hours"]) == 24
    assert activity["hours"][-1] == "2026-11-23T15:00:00+00:00"
    assert activity["series"]["succeeded"][-1] == 2
    assert activity["series"]["failed"][-3] == 1
    assert sum(activity["series"]["succeeded"]) == 2
    assert set(activity["series"]) == {"succeeded", "failed", "cancelled"}
