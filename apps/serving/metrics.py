"""Serving's Prometheus metrics: loads, requests and refusals as the processes that saw them recorded
them (device workers: loads, compute; web processes: whole requests, refusals), and each active
placement's circuit breaker, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from apps.core import redis_clients
from apps.serving.domain.breaker import Breaker, BreakerState
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.models import Placement
from apps.serving.resilience import Breakers


class BreakerCollector(Collector):
    """Every active placement's circuit breaker, read from the database and Redis at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from breaker_families()


def placement_labels(placement: Placement) -> dict[str, str]:
    """A placement's labels, on its series here and on the alerts raised about it (apps/alerts/raising.py):
    one spelling, so a silence or inhibit rule written for one matches the other. Wants its
    version's model and its device's node loaded (select_related)."""
    return {
        "placement": str(placement.pk),
        "model": placement.version.model.name,
        "version": str(placement.version.number),
        "node": placement.device.node.name,
        "device": f"{placement.device.kind}{placement.device.index}",
    }


def breaker_families() -> list[Metric]:
    """Each active placement's circuit breaker: 1 on the series of its state, 0 on the others, and
    how many times it opened. Read from the database (which placements) and Redis (their breakers)."""
    placements = list(
        Placement.objects.filter(state__in=PLACEMENT_ACTIVE).select_related("version__model", "device__node")
    )
    if not placements:
        return []
    try:
        with redis_clients.redis_client(timeout=1.0) as client:
            breakers = Breakers(client).get(p.pk for p in placements)
    except redis.RedisError:
        return []
    labels = ["placement", "model", "version", "node", "device"]
    state = GaugeMetricFamily(
        "moc_placement_breaker_state",
        "A placement's circuit breaker: 1 on the series of its state (closed, open, half_open), else 0.",
        labels=[*labels, "state"],
    )
    opened = GaugeMetricFamily(
        "moc_placement_breaker_opened",
        "Times the placement's circuit breaker opened since it was loaded.",
        labels=labels,
    )
    for p in placements:
        breaker = breakers.get(p.pk) or Breaker()
        named = placement_labels(p)
        values = [named[name] for name in labels]
        for s in BreakerState:
            state.add_metric([*values, s.value], 1.0 if breaker.state == s else 0.0)
        opened.add_metric(values, breaker.opened_count)
    return [state, opened]


# Recorded where models are loaded and served: device workers (loads, compute) and web processes
# (whole requests, refusals).
PLACEMENT_LOAD_SECONDS = Histogram(
    "moc_placement_load_duration_seconds",
    "Time a worker took to load a placement's model onto its device.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
SERVING_ERRORS = Counter(
    "moc_serving_errors",
    "Failed loads and requests, by stage (load, infer) and error class.",
    ["stage", "error_class"],
)
INFERENCE_SECONDS = Histogram(
    "moc_inference_duration_seconds",
    "Inference requests as the web process saw them, from arrival to answer, by task and outcome.",
    ["task", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
INFERENCE_REFUSED = Counter(
    "moc_inference_refused",
    "Inference requests refused before reaching a model, by reason "
    "(not_loaded, breaker_open, bulkhead_full, worker_silent, queue_busy, broker_unavailable, bad_input).",
    ["reason"],
)
