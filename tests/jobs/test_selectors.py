from __future__ import annotations

import time

import pytest

from apps.core import workers
from apps.jobs import selectors
from apps.jobs.domain.states import JobState
from tests.jobs.factories import JobFactory


def test_queue_choices_offer_default_then_the_queues_live_workers_consume() -> None:
    workers.beat(workers.redis_client(), "celery@gpu1", ["gpu.gpu1.1", "gpu.gpu1.0", "default"], time.time())

    assert selectors.queue_choices() == ["default", "gpu.gpu1.0", "gpu.gpu1.1"]


@pytest.mark.django_db
def test_overview_card_counts_running_and_queued_jobs() -> None:
    JobFactory(state=JobState.RUNNING)
    JobFactory(state=JobState.CANCELLING)
    JobFactory()

    [card] = selectors.overview_cards()

    assert (card["label"], card["value"], card["url"]) == ("Jobs running", 2, "/jobs/")
    assert card["hint"].startswith("1 queued")
