"""The per-release gauges alert rules watch, over the last minute of complete figure buckets (p99
latency and time to first token, error rate, requests per second), and verification runs that
failed in the last hour."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import DeploymentState, VerificationState
from tests.deployments.factories import DeploymentFactory, VerificationRunFactory
from tests.deployments.test_metrics import live
from tests.fleet.test_metrics import samples, value

pytestmark = pytest.mark.django_db
WINDOWED = (
    "moc_deployment_latency_p99_ms",
    "moc_deployment_ttft_p99_ms",
    "moc_deployment_error_rate",
    "moc_deployment_requests_per_second",
)


def test_a_release_with_requests_has_its_last_minute_figures(scrape: Callable[[], str]) -> None:
    _, stable, _ = live()
    client = redis_client()
    at = time.time() - 15  # inside the last minute's complete buckets
    for outcome, latency, ttft in [(Outcome.OK, 20, 5), (Outcome.OK, 30, 6), (Outcome.ERROR, 900, None)]:
        figures.record(client, release_id=stable.pk, outcome=outcome, latency_ms=latency, ttft_ms=ttft, at=at)
    # Refused requests judge nothing: neither the error rate nor the rate of requests.
    figures.record(client, release_id=stable.pk, outcome=Outcome.REFUSED, latency_ms=0, at=at)

    text = scrape()

    of_stable = {"deployment": "chat", "release": str(stable.pk), "version": str(stable.model_version.number)}
    assert value(text, "moc_deployment_error_rate", **of_stable) == pytest.approx(1 / 3)
    assert value(text, "moc_deployment_requests_per_second", **of_stable) == pytest.approx(3 / 60)
    assert value(text, "moc_deployment_latency_p99_ms", **of_stable) > 500
    assert value(text, "moc_deployment_ttft_p99_ms", **of_stable) < 10


def test_a_release_with_no_request_in_the_window_has_no_sample_rather_than_zero(
    scrape: Callable[[], str],
) -> None:
    _, stable, canary = live()
    # Only an old request: counted in the totals, outside the last minute.
    figures.record(
        redis_client(), release_id=stable.pk, outcome=Outcome.OK, latency_ms=20, at=time.time() - 600
    )

    text = scrape()

    for name in WINDOWED:
        assert samples(text, name) == [], name
    # The release is still on /metrics, by its counters.
    assert value(text, "moc_deployment_requests_total", release=str(stable.pk), outcome="ok") == 1
    assert value(text, "moc_deployment_requests_total", release=str(canary.pk), outcome="ok") == 0


def test_verification_failures_count_failed_runs_of_the_last_hour_per_deployment(
    scrape: Callable[[], str],
) -> None:
    now = timezone.now()
    deployment, stable, canary = live()
    VerificationRunFactory(
        release=canary, state=VerificationState.FAILED, finished_at=now - timedelta(minutes=10)
    )
    VerificationRunFactory(
        release=stable, state=VerificationState.FAILED, finished_at=now - timedelta(minutes=30)
    )
    VerificationRunFactory(
        release=stable, state=VerificationState.FAILED, finished_at=now - timedelta(hours=3)
    )
    VerificationRunFactory(release=canary, state=VerificationState.PASSED, finished_at=now)
    VerificationRunFactory(release=canary, state=VerificationState.ERRORED, finished_at=now)
    DeploymentFactory(name="quiet")
    DeploymentFactory(name="gone", state=DeploymentState.RETIRED)

    text = scrape()

    assert value(text, "moc_verification_failures_last_hour", deployment="chat") == 2
    assert value(text, "moc_verification_failures_last_hour", deployment="quiet") == 0
    assert samples(text, "moc_verification_failures_last_hour", deployment="gone") == []
