"""Jobs in /metrics, read from the database at scrape time: jobs waiting in each queue (queued, or
waiting for room or for a retry's backoff) and jobs that failed in the last hour, by kind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job

FAILURES_WINDOW = timedelta(hours=1)


class JobCollector(Collector):
    """The job queue's depth and recent failures, from the database at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from job_families(timezone.now())


def job_families(now: datetime) -> list[Metric]:
    """Waiting jobs by kind and queue (only the pairs that have some), and jobs that ended failed
    since `now` less an hour by kind (every kind, 0 where none did, so a rule sees it fall back)."""
    waiting = GaugeMetricFamily(
        "moc_jobs_waiting",
        "Jobs waiting in their queue (queued, waiting for room or for a retry), by kind and queue.",
        labels=["kind", "queue"],
    )
    rows = (
        Job.objects.filter(state=JobState.QUEUED)
        .values_list("kind", "queue")
        .annotate(n=Count("id"))
        .order_by("kind", "queue")
    )
    for kind, queue, n in rows:
        waiting.add_metric([kind, queue], n)
    failed = dict(
        Job.objects.filter(state=JobState.FAILED, finished_at__gte=now - FAILURES_WINDOW)
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    failures = GaugeMetricFamily(
        "moc_job_failures_last_hour", "Jobs that ended failed in the last hour, by kind.", labels=["kind"]
    )
    for kind in JobKind:
        failures.add_metric([kind.value], failed.get(kind.value, 0))
    return [family for family in (waiting, failures) if family.samples]
