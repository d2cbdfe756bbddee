from __future__ import annotations

import pytest

from tests.alerts.factories import AlertFactory, AlertRuleFactory

pytestmark = pytest.mark.django_db


def test_series_labels_leave_out_the_labels_the_rule_adds() -> None:
    alert = AlertFactory(rule=AlertRuleFactory(name="GpuHot"), series={"node": "gpu-01", "gpu": "0"})

    assert alert.series_labels == {"node": "gpu-01", "gpu": "0"}


def test_a_rules_condition_reads_like_promql() -> None:
    rule = AlertRuleFactory(metric="gpu_temperature_celsius", op=">=", threshold=85.0)

    assert rule.condition == "gpu_temperature_celsius >= 85"
