"""Threshold rules: does a value break the rule; an alert's labels and identity (the state it is in:
evaluation.py)."""

from __future__ import annotations

import hashlib
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Op(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="


class RuleKind(StrEnum):
    THRESHOLD = "threshold"
    EVENT = "event"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
METRIC_NAME_HELP = "must be a Prometheus metric name: letters, digits, _ and :, not starting with a digit"

# Lower rank is more urgent (listed first).
SEVERITY_RANK = {Severity.CRITICAL.value: 0, Severity.WARNING.value: 1, Severity.INFO.value: 2}

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """A rule's condition, `value op threshold` (its `for` and keep-firing: evaluation.RuleSpec)."""

    op: str
    threshold: float


def breaches(rule: ThresholdRule, value: float | None) -> bool:
    """Whether `value` meets the rule's condition. No value (no data, NaN) never does."""
    if value is None or math.isnan(value):
        return False
    return _COMPARE[rule.op](value, rule.threshold)


# The labels an alert gets from its rule, on top of its series' own.
RULE_LABELS = frozenset({"alertname", "severity"})


def alert_labels(rule_name: str, severity: str, series: Mapping[str, str]) -> dict[str, str]:
    """An alert's labels: the series' own, plus `alertname` and `severity` as Prometheus adds them."""
    return {**series, "alertname": rule_name, "severity": severity}


def fingerprint(rule_id: int, labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit identity for one rule's alert on one label set."""
    canonical = json.dumps([rule_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
