"""Deployments in /metrics: each live release's requests by outcome and latency histogram, read at
scrape time from the figures in Redis."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
from tests.deployments.factories import DeploymentFactory, ReleaseFactory
from tests.fleet.test_metrics import samples, value

pytestmark = pytest.mark.django_db
PROMTOOL = shutil.which("promtool")
REQUESTS = "moc_deployment_requests_total"
BUCKET = "moc_deployment_request_duration_seconds_bucket"


def live(name: str = "chat", state: str = DeploymentState.ACTIVE) -> tuple[Deployment, Release, Release]:
    """A deployment with a promoted stable release and a canary progressing."""
    deployment = DeploymentFactory(name=name, state=state)
    stable = ReleaseFactory(deployment=deployment, state=ReleaseState.PROMOTED)
    Deployment.objects.filter(pk=deployment.pk).update(current_release=stable)
    canary = ReleaseFactory(deployment=deployment, state=ReleaseState.PROGRESSING, traffic_percent=10)
    return deployment, stable, canary


def test_each_live_release_has_its_requests_by_outcome(scrape: Callable[[], str]) -> None:
    _, stable, canary = live()
    client = redis_client()
    for outcome, latency in [
        (Outcome.OK, 10),
        (Outcome.OK, 40),
        (Outcome.ERROR, 900),
        (Outcome.REFUSED, 0),
        (Outcome.REJECTED, 3),
        (Outcome.REJECTED, 4),
    ]:
        figures.record(client, release_id=stable.pk, outcome=outcome, latency_ms=latency)

    text = scrape()

    of_stable = {"deployment": "chat", "release": str(stable.pk), "version": str(stable.model_version.number)}
    assert value(text, REQUESTS, **of_stable, outcome="ok") == 2
    assert value(text, REQUESTS, **of_stable, outcome="error") == 1
    assert value(text, REQUESTS, **of_stable, outcome="refused") == 1
    assert value(text, REQUESTS, **of_stable, outcome="rejected") == 2
    # A canary nobody asked yet still has its series: monitoring sees it from the start.
    assert value(text, REQUESTS, deployment="chat", release=str(canary.pk), outcome="ok") == 0


def test_latency_is_a_histogram_in_seconds(scrape: Callable[[], str]) -> None:
    _, stable, _ = live()
    client = redis_client()
    for latency in (10, 40, 900):
        figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=latency)

    text = scrape()

    release = str(stable.pk)
    assert value(text, BUCKET, release=release, le="0.01") == 1
    assert value(text, BUCKET, release=release, le="0.05") == 2
    assert value(text, BUCKET, release=release, le="1.0") == 3
    assert value(text, BUCKET, release=release, le="+Inf") == 3
    assert value(text, "moc_deployment_request_duration_seconds_count", release=release) == 3
    assert value(text, "moc_deployment_request_duration_seconds_sum", release=release) == pytest.approx(0.95)
    # The figures' finer buckets are exported as a few dozen.
    assert len(samples(text, BUCKET, release=release)) == 28


def test_retired_deployments_and_releases_that_ended_long_ago_leave_the_series(
    scrape: Callable[[], str],
) -> None:
    live(name="gone", state=DeploymentState.RETIRED)
    deployment, _, canary = live()
    ended = ReleaseFactory(
        deployment=deployment, state=ReleaseState.ABORTED, finished_at=timezone.now() - timedelta(minutes=11)
    )
    figures.record(redis_client(), release_id=ended.pk, outcome=Outcome.OK, latency_ms=5)

    text = scrape()

    assert samples(text, REQUESTS, deployment="gone") == []
    assert samples(text, REQUESTS, release=str(ended.pk)) == []
    assert samples(text, REQUESTS, release=str(canary.pk))


def test_an_aborted_canary_stays_exported_for_ten_minutes_with_its_last_errors(
    scrape: Callable[[], str],
) -> None:
    """It left /metrics the moment it was aborted: the errors since the previous scrape, the ones
    that aborted it, were never exported."""
    deployment, _, canary = live()
    for _ in range(3):
        figures.record(redis_client(), release_id=canary.pk, outcome=Outcome.ERROR, latency_ms=50)
    Release.objects.filter(pk=canary.pk).update(
        state=ReleaseState.ABORTED, traffic_percent=0, finished_at=timezone.now() - timedelta(minutes=9)
    )

    text = scrape()

    assert value(text, REQUESTS, deployment="chat", release=str(canary.pk), outcome="error") == 3


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
def test_promtool_accepts_the_deployment_series(scrape: Callable[[], str]) -> None:
    _, stable, _ = live()
    figures.record(redis_client(), release_id=stable.pk, outcome=Outcome.OK, latency_ms=12)

    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=scrape(), capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("family", "field"),
    [
        ("moc_deployment_time_to_first_token_seconds", "ttft_ms"),
        ("moc_deployment_inter_token_latency_seconds", "itl_ms"),
        ("moc_deployment_queue_wait_seconds", "queue_ms"),
    ],
)
def test_serving_timings_are_histograms_in_seconds_with_the_deployment_label(
    scrape: Callable[[], str], family: str, field: str
) -> None:
    _, stable, canary = live()
    client = redis_client()
    for ms in (10, 40, 900):
        figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=1_000, **{field: ms})
    figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=5)  # measured none

    text = scrape()

    of_stable = {"deployment": "chat", "release": str(stable.pk), "version": str(stable.model_version.number)}
    assert value(text, f"{family}_bucket", **of_stable, le="0.01") == 1
    assert value(text, f"{family}_bucket", **of_stable, le="0.05") == 2
    assert value(text, f"{family}_bucket", **of_stable, le="+Inf") == 3
    assert value(text, f"{family}_count", **of_stable) == 3
    assert value(text, f"{family}_sum", **of_stable) == pytest.approx(0.95)
    assert value(text, f"{family}_count", deployment="chat", release=str(canary.pk)) == 0


def test_output_tokens_and_refusals_by_reason_are_counters(scrape: Callable[[], str]) -> None:
    _, stable, _ = live()
    client = redis_client()
    figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=50, tokens_out=12)
    figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=50, tokens_out=30)
    for reason in ("bulkhead_full", "bulkhead_full", "worker_silent"):
        figures.record(client, release_id=stable.pk, outcome=Outcome.REFUSED, latency_ms=0, refusal=reason)

    text = scrape()

    release = str(stable.pk)
    assert value(text, "moc_deployment_output_tokens_total", deployment="chat", release=release) == 42
    refusals = "moc_deployment_refusals_total"
    assert value(text, refusals, deployment="chat", release=release, reason="bulkhead_full") == 2
    assert value(text, refusals, deployment="chat", release=release, reason="worker_silent") == 1
