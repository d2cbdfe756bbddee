"""Prometheus metrics of the web processes, safe with several gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (the run command and compose set it) each process
writes its samples to files there and /metrics merges them.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

HTTP_REQUESTS = Counter(
    "moc_http_requests_total",
    "HTTP requests served, by method, route and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "moc_http_request_duration_seconds",
    "Time to serve an HTTP request, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_LATENCY.labels(route=route).observe(seconds)


class StateCollector(Collector):
    """Gauges read from the database and Redis at scrape time: the truth, not a process's memory."""

    def collect(self):  # type: ignore[no-untyped-def]
        from apps.core import selectors

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


def process_registry(multiproc_dir: str) -> CollectorRegistry:
    """What this machine's MOC processes recorded themselves (no database or Redis reads)."""
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        return registry
    return REGISTRY


def serve_worker_metrics(port: int, multiproc_dir: str) -> None:
    """A Celery worker's own /metrics on `port` (0: off), for deployments where workers do
    not share a metrics folder with a web process (compose: one container each)."""
    if port:
        start_http_server(port, registry=process_registry(multiproc_dir))


def render(multiproc_dir: str, collectors: Iterable[Collector] = ()) -> bytes:
    """The exposition of this machine's processes (or this process), core's state gauges and the
    `collectors` the site adds (moc_site.views: each app's scrape-time figures)."""
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry = CollectorRegistry()
        for collector in (HTTP_REQUESTS, HTTP_LATENCY):
            registry.register(collector)
    registry.register(StateCollector())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
