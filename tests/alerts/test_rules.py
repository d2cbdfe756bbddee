"""Threshold conditions, alert labels and fingerprints (pure)."""

from __future__ import annotations

import pytest

from apps.alerts.domain.rules import ThresholdRule, alert_labels, breaches, fingerprint


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
