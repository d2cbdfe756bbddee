"""Deployments in /metrics: each live release's requests by outcome and their latency, read at scrape
time from the figures every web process adds to in Redis (apps.deployments.figures), so the series
are the same whichever process Prometheus asks, and a release shows from the moment it is live."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from django.db.models import F, Q
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from apps.core import redis_clients
from apps.deployments import figures
from apps.deployments.domain.figures import BOUNDS_MS, Outcome
from apps.deployments.domain.states import RELEASE_OPEN, DeploymentState
from apps.deployments.models import Release

REQUESTS = "moc_deployment_requests"  # exposed as moc_deployment_requests_total
DURATION = "moc_deployment_request_duration_seconds"
_LE = [floatToGoString(bound / 1000) for bound in BOUNDS_MS] + ["+Inf"]


class DeploymentCollector(Collector):
    """The request figures of every non-retired deployment's stable release and release in
    progress, read from the database (which releases) and Redis (their totals) at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from deployment_families()


def exported_releases() -> list[Release]:
    """The stable and open releases of the deployments that are not retired."""
    return list(
        Release.objects.exclude(deployment__state=DeploymentState.RETIRED)
        .filter(Q(state__in=RELEASE_OPEN) | Q(deployment__current_release=F("pk")))
        .select_related("deployment", "model_version")
        .order_by("deployment__name", "pk")
    )


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
        "Requests a deployment answered (ok), failed (error: the release's failure) or refused "
        "(refused: bad input, the deployment's bulkhead), by release.",
        labels=[*labels, "outcome"],
    )
    # Only the buckets and the count: the figures keep no sum of latencies.
    duration = HistogramMetricFamily(
        DURATION,
        "Time to answer or fail a deployment's request, as the web process saw it, by release.",
        labels=labels,
    )
    for release in releases:
        values = [release.deployment.name, str(release.pk), str(release.model_version.number)]
        total = totals[release.pk]
        requests.add_metric([*values, Outcome.OK.value], total.requests - total.errors)
        requests.add_metric([*values, Outcome.ERROR.value], total.errors)
        requests.add_metric([*values, Outcome.REFUSED.value], total.refused)
        cumulative, running = [], 0
        for le, count in zip(_LE, total.buckets, strict=True):
            running += count
            cumulative.append((le, float(running)))
        duration.add_metric(values, cumulative, sum_value=None)
        duration.samples.append(Sample(f"{DURATION}_count", dict(zip(labels, values, strict=True)), running))
    return [requests, duration]
