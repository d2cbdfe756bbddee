"""Core's gauges read at scrape time from the database and Redis: the build, live workers by queue,
and rows by state in every MOC table, and the outbox's waiting task messages."""

from __future__ import annotations

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from apps.core import outbox, selectors


class StateCollector(Collector):
    """Gauges read from the database and Redis at scrape time: the truth, not a process's memory."""

    def collect(self):  # type: ignore[no-untyped-def]
        info = InfoMetricFamily("moc_build", "MOC version.")
        info.add_metric([], {"version": selectors.moc_version()})
        yield info
        workers = GaugeMetricFamily(
            "moc_workers_live", "Celery workers with a live heartbeat, by queue.", labels=["queue"]
        )
        for queue, count in selectors.live_worker_counts_by_queue().items():
            workers.add_metric([queue], count)
        yield workers
        rows = GaugeMetricFamily(
            "moc_objects", "Rows in MOC's stateful tables, by table and state.", labels=["table", "state"]
        )
        for (table, state), count in selectors.state_counts().items():
            rows.add_metric([table, state], count)
        yield rows
        backlog = outbox.waiting()
        yield GaugeMetricFamily(
            "moc_outbox_waiting",
            "Task messages decided but not yet taken by the broker (it was unreachable).",
            value=backlog.count,
        )
        yield GaugeMetricFamily(
            "moc_outbox_oldest_age_seconds",
            "Age of the oldest task message waiting in the outbox; 0 when none waits.",
            value=backlog.oldest_age_s(timezone.now()),
        )
