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
    """The exposition of this machine's processes (or this process) and of the scrape-time
    `collectors` the site adds (moc_site.views: core's state gauges, each app's figures)."""
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry = CollectorRegistry()
        for collector in (HTTP_REQUESTS, HTTP_LATENCY):
            registry.register(collector)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
