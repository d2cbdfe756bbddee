"""Deployments in /metrics: each live release's requests by outcome, their latency, time to first
token, inter-token latency and queue wait (histograms, in seconds), output tokens and refusals by
reason, read at scrape time from the figures every web process adds to in Redis
(apps.deployments.figures), so the series are the same whichever process Prometheus asks, and a
release shows from the moment it is live until CHART_WINDOW_S after it ended, as the deployment
page charts it (an aborted canary's last errors still reach the next scrapes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import redis
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from apps.core import redis_clients
from apps.deployments import figures
from apps.deployments.domain.figures import BOUNDS_MS, PROMETHEUS_BOUNDS_MS, Histogram, Outcome
from apps.deployments.domain.states import DeploymentState, VerificationState
from apps.deployments.models import Deployment, Release
from apps.deployments.selectors import charted

REQUESTS = "moc_deployment_requests"  # exposed as moc_deployment_requests_total
DURATION = "moc_deployment_request_duration_seconds"
TTFT = "moc_deployment_time_to_first_token_seconds"
ITL = "moc_deployment_inter_token_latency_seconds"
QUEUE = "moc_deployment_queue_wait_seconds"
TOKENS = "moc_deployment_output_tokens"  # exposed as moc_deployment_output_tokens_total
REFUSALS = "moc_deployment_refusals"  # exposed as moc_deployment_refusals_total
# The window of the per-release gauges alert rules watch (complete buckets, figures.recent).
WINDOW_S = 60
FAILURES_WINDOW = timedelta(hours=1)
# The coarser buckets exported: the index in BOUNDS_MS of each, and its `le` label (seconds).
_EXPORTED = [(BOUNDS_MS.index(bound), floatToGoString(bound / 1000)) for bound in PROMETHEUS_BOUNDS_MS]


class DeploymentCollector(Collector):
    """The request figures of every non-retired deployment's stable release, release in progress
    and releases that ended in the last CHART_WINDOW_S, read from the database (which releases)
    and Redis (their totals) at scrape time."""

    def collect(self) -> Iterator[Metric]:
        releases = exported_releases()
        yield from deployment_families(releases)
        yield from window_families(releases, now=time.time())
        yield from verification_failure_families(timezone.now())


def exported_releases(now: datetime | None = None) -> list[Release]:
    """The releases of the deployments that are not retired whose figures are shown
    (selectors.charted): what the deployment page charts is what /metrics exports."""
    return list(
        Release.objects.exclude(deployment__state=DeploymentState.RETIRED)
        .filter(charted(now or timezone.now()))
        .select_related("deployment", "model_version")
        .order_by("deployment__name", "pk")
    )


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """The histogram's cumulative counts at the exported bounds, and +Inf."""
    below = [sum(histogram.counts[: index + 1]) for index, _ in _EXPORTED]
    cumulative = [(le, float(n)) for (_, le), n in zip(_EXPORTED, below, strict=True)]
    return [*cumulative, ("+Inf", float(histogram.count))]


def deployment_families(releases: list[Release] | None = None) -> list[Metric]:
    releases = exported_releases() if releases is None else releases
    if not releases:
        return []
    try:
        totals = figures.totals(redis_clients.redis_client(timeout=1.0), (r.pk for r in releases))
    except redis.RedisError:
        return []
    labels = ["deployment", "release", "version"]
    requests = CounterMetricFamily(
        REQUESTS,
        "Requests a deployment answered (ok), failed (error: the release's failure), refused "
        "(refused: the deployment's bulkhead, a bound of the web process, MOC's Redis or broker away: "
        "not the release's doing) or whose input the model rejected (rejected: bad input), by release.",
        labels=[*labels, "outcome"],
    )
    timings = {
        "latency": HistogramMetricFamily(
            DURATION,
            "Time to answer or fail a deployment's request (neither refused nor rejected), as the web "
            "process saw it, less any wait for a slot in the deployment's bulkhead, by release.",
            labels=labels,
        ),
        "ttft": HistogramMetricFamily(
            TTFT,
            "Time from a worker taking a request to its first generated token, by release.",
            labels=labels,
        ),
        "itl": HistogramMetricFamily(
            ITL,
            "Each generating request's mean time between tokens, by release.",
            labels=labels,
        ),
        "queue": HistogramMetricFamily(
            QUEUE,
            "Time a request waited before a worker took it (the device's queue and the bulkhead's "
            "slot), by release.",
            labels=labels,
        ),
    }
    tokens = CounterMetricFamily(TOKENS, "Output tokens a deployment generated, by release.", labels=labels)
    refusals = CounterMetricFamily(
        REFUSALS,
        "Requests refused before the model, by release and reason (where the reason was given).",
        labels=[*labels, "reason"],
    )
    for release in releases:
        values = [release.deployment.name, str(release.pk), str(release.model_version.number)]
        total = totals[release.pk]
        requests.add_metric([*values, Outcome.OK.value], total.requests - total.errors)
        requests.add_metric([*values, Outcome.ERROR.value], total.errors)
        requests.add_metric([*values, Outcome.REFUSED.value], total.refused)
        requests.add_metric([*values, Outcome.REJECTED.value], total.rejected)
        for name, family in timings.items():
            histogram: Histogram = getattr(total, name)
            family.add_metric(values, _buckets(histogram), sum_value=histogram.sum_ms / 1000)
        tokens.add_metric(values, total.tokens_out)
        for reason, count in sorted(total.refusals.items()):
            refusals.add_metric([*values, reason], count)
    return [requests, *timings.values(), tokens, refusals]


def window_families(releases: list[Release], *, now: float) -> list[Metric]:
    """Each release's p99 latency and time to first token (ms), error rate (0-1: errors of answered
    or failed requests) and requests per second over the last WINDOW_S seconds of complete buckets:
    the figures alert rules compare with a threshold. A release with no request in the window has no
    sample (no latency is not 0 ms); Redis away, none at all."""
    if not releases:
        return []
    try:
        _, totals, _ = figures.recent(
            redis_clients.redis_client(timeout=1.0), [r.pk for r in releases], seconds=WINDOW_S, now=now
        )
    except redis.RedisError:
        return []
    labels = ["deployment", "release", "version"]
    p99 = GaugeMetricFamily(
        "moc_deployment_latency_p99_ms",
        f"99th percentile of a release's request latency over the last {WINDOW_S} s (ms).",
        labels=labels,
    )
    ttft = GaugeMetricFamily(
        "moc_deployment_ttft_p99_ms",
        f"99th percentile of a release's time to first token over the last {WINDOW_S} s (ms).",
        labels=labels,
    )
    error_rate = GaugeMetricFamily(
        "moc_deployment_error_rate",
        f"Share of a release's answered or failed requests that failed over the last {WINDOW_S} s (0-1).",
        labels=labels,
    )
    rps = GaugeMetricFamily(
        "moc_deployment_requests_per_second",
        f"A release's answered or failed requests per second over the last {WINDOW_S} s.",
        labels=labels,
    )
    for release in releases:
        total = totals[release.pk]
        if not total.requests:
            continue
        values = [release.deployment.name, str(release.pk), str(release.model_version.number)]
        for family, value in (
            (p99, total.p99_ms),
            (ttft, total.ttft.p99_ms),
            (error_rate, total.error_rate),
            (rps, total.rps),
        ):
            if value is not None:
                family.add_metric(values, value)
    return [family for family in (p99, ttft, error_rate, rps) if family.samples]


def verification_failure_families(now: datetime) -> list[Metric]:
    """Verification runs that failed in the last hour, per deployment that is not retired (0 where
    none did, so a rule sees the count fall back)."""
    since = now - FAILURES_WINDOW
    counts = (
        Deployment.objects.exclude(state=DeploymentState.RETIRED)
        .annotate(
            failed=Count(
                "releases__verification_runs",
                filter=Q(
                    releases__verification_runs__state=VerificationState.FAILED,
                    releases__verification_runs__finished_at__gte=since,
                ),
            )
        )
        .order_by("name")
        .values_list("name", "failed")
    )
    family = GaugeMetricFamily(
        "moc_verification_failures_last_hour",
        "Release verification runs that failed in the last hour, by deployment.",
        labels=["deployment"],
    )
    for name, failed in counts:
        family.add_metric([name], failed)
    return [family] if family.samples else []
