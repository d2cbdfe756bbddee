"""The live series of the catalogue's metrics, read exactly as /metrics reads them: by calling the
same collector functions and turning their families' samples into evaluation.Sample. What a rule
watches is therefore what Prometheus would scrape at that instant, labels and all.

Only the sources the asked metrics need are read. Redis away leaves the metrics read from it
empty (their rules see no series, as /metrics would show none), logged once until it is back;
nothing here raises for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import redis
from django.utils import timezone
from prometheus_client.metrics_core import Metric

from apps.alerts.domain.catalog import CATALOG
from apps.alerts.domain.evaluation import Sample
from apps.core import redis_clients
from apps.deployments.metrics import exported_releases, verification_failure_families, window_families
from apps.fleet import telemetry
from apps.fleet.metrics import device_families, heartbeat_families, stale_after_s
from apps.jobs.metrics import job_families
from apps.serving.metrics import breaker_families

logger = logging.getLogger(__name__)
_redis_down = False  # logged already, until a read succeeds again


def _devices() -> list[Metric]:
    global _redis_down
    try:
        with redis_clients.redis_client(timeout=1.0) as client:
            messages = telemetry.latest(client)
    except redis.RedisError as exc:
        if not _redis_down:
            logger.warning("alerts: device telemetry unreadable, Redis: %s (rules on it see no series)", exc)
            _redis_down = True
        return []
    _redis_down = False
    return device_families(messages, now=time.time(), stale_after=stale_after_s())


def _windows() -> list[Metric]:
    return window_families(exported_releases(), now=time.time())


# Each source: the collector function /metrics calls for its families.
_SOURCES: dict[str, Callable[[], list[Metric]]] = {
    "devices": _devices,
    "nodes": lambda: heartbeat_families(timezone.now()),
    "breakers": breaker_families,
    "windows": _windows,
    "verification": lambda: verification_failure_families(timezone.now()),
    "jobs": lambda: job_families(timezone.now()),
}
SOURCE_OF: dict[str, str] = {
    "DCGM_FI_DEV_GPU_TEMP": "devices",
    "DCGM_FI_DEV_GPU_UTIL": "devices",
    "DCGM_FI_DEV_POWER_USAGE": "devices",
    "moc_device_memory_used_ratio": "devices",
    "moc_device_health": "devices",
    "moc_node_heartbeat_age_seconds": "nodes",
    "moc_deployment_latency_p99_ms": "windows",
    "moc_deployment_ttft_p99_ms": "windows",
    "moc_deployment_error_rate": "windows",
    "moc_deployment_requests_per_second": "windows",
    "moc_placement_breaker_state": "breakers",
    "moc_jobs_waiting": "jobs",
    "moc_job_failures_last_hour": "jobs",
    "moc_verification_failures_last_hour": "verification",
}


def current(metrics: Iterable[str]) -> dict[str, list[Sample]]:
    """Each named metric's series now (an empty list where it has none, or is not in the catalogue)."""
    wanted: dict[str, list[Sample]] = {m: [] for m in metrics}
    sources = {SOURCE_OF[m] for m in wanted if m in CATALOG and m in SOURCE_OF}
    for source in sorted(sources):
        for family in _SOURCES[source]():
            for sample in family.samples:
                if sample.name in wanted:
                    wanted[sample.name].append(Sample(labels=dict(sample.labels), value=float(sample.value)))
    return wanted


def label_values(metric: str) -> dict[str, list[str]]:
    """Each label of `metric` with its distinct values now, sorted (the rule editor's hints)."""
    spec = CATALOG.get(metric)
    if spec is None:
        return {}
    values: dict[str, set[str]] = {label: set() for label in spec.labels}
    for sample in current([metric])[metric]:
        for label, value in sample.labels.items():
            values.setdefault(label, set()).add(value)
    return {label: sorted(found) for label, found in values.items()}
