"""Deployments in /metrics: each live release's requests by outcome, their latency, time to first
token, inter-token latency and queue wait (histograms, in seconds), output tokens and refusals by
reason, read at scrape time from the figures every web process adds to in Redis
(apps.deployments.figures), so the series are the same whichever process Prometheus asks, and a
release shows from the moment it is live until CHART_WINDOW_S after it ended, as the deployment
page charts it (an aborted canary's last errors still reach the next scrapes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import redis
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from apps.core import redis_clients
from apps.deployments import figures
from apps.deployments.domain.figures import BOUNDS_MS, PROMETHEUS_BOUNDS_MS, Histogram, Outcome
from apps.deployments.domain.states import DeploymentState
from apps.deployments.models import Release
from apps.deployments.selectors import charted

REQUESTS = "moc_deployment_requests"  # exposed as moc_deployment_requests_total
DURATION = "moc_deployment_request_duration_seconds"
TTFT = "moc_deployment_time_to_first_token_seconds"
ITL = "moc_deployment_inter_token_latency_seconds"
QUEUE = "moc_deployment_queue_wait_seconds"
TOKENS = "moc_deployment_output_tokens"  # exposed as moc_deployment_output_tokens_total
REFUSALS = "moc_deployment_refusals"  # exposed as moc_deployment_refusals_total
# The coarser buckets exported: the index in BOUNDS_MS of each, and its `le` label (seconds).
_EXPORTED = [(BOUNDS_MS.index(bound), floatToGoString(bound / 1000)) for bound in PROMETHEUS_BOUNDS_MS]


class DeploymentCollector(Collector):
    """The request figures of every non-retired deployment's stable release, release in progress
    and releases that ended in the last CHART_WINDOW_S, read from the database (which releases)
    and Redis (their totals) at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from deployment_families()


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


def deployment_families() -> list[Metric]:
    releases = exported_releases()
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
