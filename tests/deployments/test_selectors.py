from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.deployments import figures, selectors, traffic
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
from tests.deployments.factories import DeploymentFactory, ReleaseFactory

pytestmark = pytest.mark.django_db


def test_overview_card_counts_active_deployments_and_releases_in_progress() -> None:
    DeploymentFactory(state=DeploymentState.ACTIVE)
    ReleaseFactory(deployment__state=DeploymentState.ACTIVE, state=ReleaseState.VERIFYING)
    DeploymentFactory(state=DeploymentState.PAUSED)

    [card] = selectors.overview_cards()

    assert (card["label"], card["value"], card["url"]) == ("Deployments active", 2, "/deployments/")
    assert card["hint"] == "1 paused · 0 draft · 1 release in progress"


def _live(name: str) -> tuple[Deployment, Release, Release]:
    stable = ReleaseFactory(deployment__name=name, state=ReleaseState.PROMOTED, traffic_percent=75)
    deployment = stable.deployment
    deployment.current_release = stable
    deployment.save()
    canary = ReleaseFactory(
        deployment=deployment, state=ReleaseState.PROGRESSING, traffic_percent=25, previous_release=stable
    )
    return deployment, stable, canary


def test_split_of_a_listed_deployment_needs_no_query_and_agrees_with_the_request_path(
    django_assert_num_queries: Any,
) -> None:
    _live("chat")
    [deployment] = selectors.deployment_list()

    with django_assert_num_queries(0):
        split = selectors.split_of(deployment)

    assert split == traffic.live_split(deployment)
    assert (split.canary_percent, split.stable_percent) == (25, 75)


def test_recent_figures_add_up_a_deployments_live_releases_over_the_last_minute() -> None:
    deployment, stable, canary = _live("chat")
    client, now = redis_client(), time.time()
    for release, outcome in [(stable, Outcome.OK), (stable, Outcome.ERROR), (canary, Outcome.OK)]:
        figures.record(client, release_id=release.pk, outcome=outcome, latency_ms=10, at=now - 5)
    figures.record(client, release_id=stable.pk, outcome=Outcome.ERROR, latency_ms=10, at=now - 120)

    [listed] = selectors.deployment_list()
    recent = selectors.recent_figures(client, [listed], now=now)[deployment.pk]

    assert recent.requests == 3
    assert recent.rps == pytest.approx(3 / 60)
    assert recent.error_rate == pytest.approx(1 / 3)


def test_recent_figures_leave_out_the_bucket_still_filling_and_divide_by_the_span_covered() -> None:
    """The span began partway into a bucket and counted the one still filling, over the nominal
    minute: the list page's RPS read up to 8% high."""
    deployment, stable, _ = _live("chat")
    client = redis_client()
    now = 1_700_000_002.5  # 2.5 s into a bucket
    for at in (now - 63, now - 60, now - 30, now):  # before the minute, in it (2), filling
        figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=10, at=at)

    [listed] = selectors.deployment_list()
    recent = selectors.recent_figures(client, [listed], now=now)[deployment.pk]

    assert recent.requests == 2
    assert recent.rps == pytest.approx(2 / 60)


def test_the_chart_keeps_a_release_that_ended_in_its_window_and_drops_older_ones() -> None:
    deployment, stable, canary = _live("chat")
    now = timezone.now()
    aborted = ReleaseFactory(
        deployment=deployment, state=ReleaseState.ABORTED, finished_at=now - timedelta(minutes=2)
    )
    ReleaseFactory(deployment=deployment, state=ReleaseState.ABORTED, finished_at=now - timedelta(hours=2))

    charted = selectors.chart_releases(deployment=deployment, now=now)

    assert {r.pk for r in charted} == {stable.pk, canary.pk, aborted.pk}
