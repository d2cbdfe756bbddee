"""The figures alert rules may watch, named exactly as /metrics names them, and what is wrong with
a rule that names something else.

Each metric's labels are those of its series on /metrics, so a rule's matchers can be checked
before it is saved (a matcher on a label the metric lacks would silently match nothing, or
everything). `history` says whether MOC stores samples of the figure, which is what the rule
preview replays; the others are checked against live values only.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.alerts.domain.events import EVENT_LABEL_NAMES, EventKind
from apps.alerts.domain.matchers import Matcher
from apps.alerts.domain.rules import RULE_LABELS, RuleKind

# The labels of every device series (apps.fleet.metrics.DEVICE_LABELS: this package imports no app).
DEVICE_LABELS = ("node", "gpu", "device", "uuid", "model_name", "simulated")
RELEASE_LABELS = ("deployment", "release", "version")
PLACEMENT_LABELS = ("placement", "model", "version", "node", "device")

GROUPS = ("Devices", "Nodes", "Deployments", "Serving", "Jobs", "Releases")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    help: str
    unit: str
    labels: tuple[str, ...]
    group: str
    history: bool


def spec_dict(spec: MetricSpec) -> dict[str, Any]:
    """A metric as JSON (the API's metric catalogue, the rule editor's hints)."""
    return {
        "name": spec.name,
        "help": spec.help,
        "unit": spec.unit,
        "labels": list(spec.labels),
        "group": spec.group,
        "history": spec.history,
    }


_SPECS = (
    MetricSpec(
        "DCGM_FI_DEV_GPU_TEMP", "Device temperature (degrees C).", "°C", DEVICE_LABELS, "Devices", True
    ),
    MetricSpec(
        "DCGM_FI_DEV_GPU_UTIL",
        "Share of time a kernel ran on the device (%).",
        "%",
        DEVICE_LABELS,
        "Devices",
        True,
    ),
    MetricSpec("DCGM_FI_DEV_POWER_USAGE", "Power draw (W).", "W", DEVICE_LABELS, "Devices", True),
    MetricSpec(
        "moc_device_memory_used_ratio",
        "Share of the device's memory in use (0-1).",
        "ratio",
        DEVICE_LABELS,
        "Devices",
        True,
    ),
    MetricSpec(
        "moc_device_health",
        "The device's health: 1 on the series of its current state (label health), 0 on the others.",
        "state",
        (*DEVICE_LABELS, "health"),
        "Devices",
        False,
    ),
    MetricSpec(
        "moc_node_heartbeat_age_seconds",
        "Seconds since the node's workers last sent a heartbeat (nodes not marked offline: a lost "
        "node is the NodeLost event).",
        "s",
        ("node",),
        "Nodes",
        False,
    ),
    MetricSpec(
        "moc_deployment_latency_p99_ms",
        "99th percentile of a live release's request latency over the last minute.",
        "ms",
        RELEASE_LABELS,
        "Deployments",
        True,
    ),
    MetricSpec(
        "moc_deployment_ttft_p99_ms",
        "99th percentile of a live release's time to first token over the last minute.",
        "ms",
        RELEASE_LABELS,
        "Deployments",
        True,
    ),
    MetricSpec(
        "moc_deployment_error_rate",
        "Share of a live release's requests that failed over the last minute (0-1).",
        "ratio",
        RELEASE_LABELS,
        "Deployments",
        True,
    ),
    MetricSpec(
        "moc_deployment_requests_per_second",
        "A live release's requests (answered or failed) per second over the last minute.",
        "req/s",
        RELEASE_LABELS,
        "Deployments",
        True,
    ),
    MetricSpec(
        "moc_placement_breaker_state",
        "A placement's circuit breaker: 1 on the series of its state (label state: closed, open, "
        "half_open), 0 on the others.",
        "state",
        (*PLACEMENT_LABELS, "state"),
        "Serving",
        False,
    ),
    MetricSpec(
        "moc_jobs_waiting",
        "Jobs queued or waiting for room, by kind and queue.",
        "count",
        ("kind", "queue"),
        "Jobs",
        False,
    ),
    MetricSpec(
        "moc_job_failures_last_hour",
        "Jobs that ended failed in the last hour, by kind.",
        "count",
        ("kind",),
        "Jobs",
        False,
    ),
    MetricSpec(
        "moc_verification_failures_last_hour",
        "Release verification runs that failed in the last hour, by deployment.",
        "count",
        ("deployment",),
        "Releases",
        False,
    ),
)

CATALOG: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}


def allowed_labels(*, kind: str, metric: str, event: str) -> tuple[str, ...] | None:
    """The labels a rule's matchers may name (the series' own, and the rule's alertname and
    severity); None when the metric or event is unknown."""
    if kind == RuleKind.EVENT:
        if event not in EVENT_LABEL_NAMES:
            return None
        own: tuple[str, ...] = (*EVENT_LABEL_NAMES[EventKind(event)], "event")
    else:
        spec = CATALOG.get(metric)
        if spec is None:
            return None
        own = spec.labels
    return (*own, *sorted(RULE_LABELS))


def rule_errors(
    *, kind: str, metric: str, event: str, threshold: float | None, matchers: Sequence[Any]
) -> dict[str, list[str]]:
    """Everything wrong with a rule's metric, event, threshold and matcher labels, by field;
    empty when there is nothing. Matchers are Matcher objects or their JSON form; a malformed
    one is matchers.matcher_errors' to report and is skipped here."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    kinds = [k.value for k in RuleKind]
    if kind not in kinds:
        add("kind", f"must be one of {', '.join(kinds)}")
        return errors
    if kind == RuleKind.THRESHOLD:
        if not metric:
            add("metric", "is required for threshold rules")
        elif metric not in CATALOG:
            add("metric", _unknown("metric", metric, CATALOG))
        if threshold is None:
            add("threshold", "is required for threshold rules")
        if event:
            add("event", "must be empty for threshold rules (they watch a metric)")
        about = metric
    else:
        events = [e.value for e in EventKind]
        if not event:
            add("event", f"is required for event rules: one of {', '.join(events)}")
        elif event not in events:
            add("event", _unknown("event", event, events))
        if metric:
            add("metric", "must be empty for event rules (they watch an event)")
        about = f"event {event}"
    allowed = allowed_labels(kind=kind, metric=metric, event=event)
    if allowed is not None:
        for label in _labels_of(matchers):
            if label not in allowed:
                add("matchers", f"label '{label}' is not a label of {about} ({', '.join(allowed)})")
    return errors


def _unknown(what: str, name: str, known: Mapping[str, Any] | Sequence[str]) -> str:
    # Case apart: "gpu_temp" should find DCGM_FI_DEV_GPU_TEMP.
    by_lower = {k.lower(): k for k in known}
    close = [by_lower[k] for k in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
    if close:
        return f"unknown {what} '{name}'; did you mean {' or '.join(close)}?"
    return f"unknown {what} '{name}'; one of {', '.join(known)}"


def _labels_of(matchers: Sequence[Any]) -> list[str]:
    labels = []
    for m in matchers:
        if isinstance(m, Matcher):
            labels.append(m.label)
        elif isinstance(m, Mapping) and isinstance(m.get("label"), str):
            labels.append(m["label"])
    return labels
