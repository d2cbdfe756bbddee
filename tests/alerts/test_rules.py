"""Threshold evaluation with a for-duration (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.alerts.domain.rules import ThresholdRule, alert_labels, breaches, evaluate, fingerprint
from apps.alerts.domain.states import AlertState

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (">", 85.1, True),
        (">", 85.0, False),
        (">=", 85.0, True),
        (">=", 84.9, False),
        ("<", 84.9, True),
        ("<", 85.0, False),
        ("<=", 85.0, True),
        ("<=", 85.1, False),
        ("==", 85.0, True),
        ("==", 85.1, False),
        ("!=", 85.1, True),
        ("!=", 85.0, False),
    ],
)
def test_each_operator_compares_the_value_with_the_threshold(op: str, value: float, expected: bool) -> None:
    assert breaches(ThresholdRule(op=op, threshold=85.0), value) is expected


@pytest.mark.parametrize("value", [None, float("nan")])
def test_no_data_never_breaches(value: float | None) -> None:
    assert not breaches(ThresholdRule(op="!=", threshold=0.0), value)


@pytest.mark.parametrize(
    ("value", "since", "expected"),
    [
        (80.0, None, None),  # quiet, nothing open: nothing to do
        (90.0, None, AlertState.PENDING),  # starts holding: pending
        (90.0, ago(59.999), AlertState.PENDING),  # just short of the duration
        (90.0, ago(60), AlertState.FIRING),  # exactly the duration: fires
        (90.0, ago(61), AlertState.FIRING),
        (80.0, ago(30), AlertState.RESOLVED),  # stopped before firing
        (80.0, ago(600), AlertState.RESOLVED),  # stopped after firing
        (None, ago(600), AlertState.RESOLVED),  # the series went away
    ],
)
def test_evaluate_with_a_60_second_duration(
    value: float | None, since: dt.datetime | None, expected: AlertState | None
) -> None:
    rule = ThresholdRule(op=">", threshold=85.0, for_seconds=60)

    assert evaluate(rule, value, since, NOW) == expected


def test_a_rule_without_a_duration_fires_at_once() -> None:
    rule = ThresholdRule(op=">", threshold=85.0, for_seconds=0)

    assert evaluate(rule, 90.0, None, NOW) == AlertState.FIRING


def test_alert_labels_add_the_alertname_and_severity() -> None:
    labels = alert_labels("GpuHot", "critical", {"node": "gpu-01"})

    assert labels == {"node": "gpu-01", "alertname": "GpuHot", "severity": "critical"}


def test_the_fingerprint_ignores_label_order() -> None:
    assert fingerprint(1, {"a": "1", "b": "2"}) == fingerprint(1, {"b": "2", "a": "1"})


def test_the_fingerprint_differs_per_rule() -> None:
    assert fingerprint(1, {"a": "1"}) != fingerprint(2, {"a": "1"})


def test_the_fingerprint_is_16_hex_digits() -> None:
    assert len(fingerprint(1, {"a": "1"})) == 16
    int(fingerprint(1, {"a": "1"}), 16)
