from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.alerts.models import InhibitRule
from tests.alerts.factories import AlertFactory, AlertRuleFactory

pytestmark = pytest.mark.django_db


def test_series_labels_leave_out_the_labels_the_rule_adds() -> None:
    alert = AlertFactory(rule=AlertRuleFactory(name="GpuHot"), series={"node": "gpu-01", "gpu": "0"})

    assert alert.series_labels == {"node": "gpu-01", "gpu": "0"}


def test_a_rules_condition_reads_like_promql() -> None:
    rule = AlertRuleFactory(metric="gpu_temperature_celsius", op=">=", threshold=85.0)

    assert rule.condition == "gpu_temperature_celsius >= 85"


@pytest.mark.parametrize(
    ("equal", "errors"),
    [
        (["node", "not a label"], ["'not a label' is not a label name"]),
        ("node", ["must be a list of label names"]),
        ([7], ["7 is not a label name"]),
    ],
)
def test_an_inhibit_rules_equal_holds_label_names_as_in_the_api(equal: object, errors: list[str]) -> None:
    rule = InhibitRule(
        name="node-down",
        source_matchers=[{"label": "alertname", "op": "=", "value": "NodeDown"}],
        target_matchers=[{"label": "device", "op": "=~", "value": ".+"}],
        equal=equal,
    )

    with pytest.raises(ValidationError) as refused:
        rule.full_clean()

    assert refused.value.message_dict == {"equal": errors}
