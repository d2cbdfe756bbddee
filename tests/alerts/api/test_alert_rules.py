"""/api/v1/alert-rules/: configuring threshold rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.alerts.models import AlertRule
from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, AlertRuleFactory

pytestmark = pytest.mark.django_db

RULES = "/api/v1/alert-rules/"
Client = Callable[[Role | None], APIClient]


@pytest.fixture
def admin_api(client_as: Client) -> APIClient:
    return client_as(Role.ADMIN)


def test_an_admin_creates_a_rule(admin_api: APIClient) -> None:
    response = admin_api.post(
        RULES,
        {
            "name": "GpuHot",
            "metric": "gpu_temperature_celsius",
            "op": ">=",
            "threshold": 85,
            "for_seconds": 120,
            "severity": "critical",
            "matchers": [{"label": "node", "op": "=~", "value": "gpu-.*"}],
        },
    )

    assert response.status_code == 201
    rule = AlertRule.objects.get()
    assert (rule.condition, rule.for_seconds, rule.severity) == (
        "gpu_temperature_celsius >= 85",
        120,
        "critical",
    )


def test_a_rule_shows_its_open_alert_count(client_as: Client) -> None:
    rule = AlertRuleFactory()
    AlertFactory(rule=rule)

    body = client_as(Role.VIEWER).get(f"{RULES}{rule.pk}/").json()

    assert body["open_alerts"] == 1


def test_a_duplicate_rule_name_names_the_name_field(admin_api: APIClient) -> None:
    AlertRuleFactory(name="GpuHot")

    response = admin_api.post(RULES, {"name": "GpuHot", "metric": "m", "threshold": 1})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["name"]


def test_a_bad_metric_name_names_the_metric_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {"name": "x", "metric": "gpu temp", "threshold": 1})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["metric"]


def test_an_unknown_operator_names_the_op_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {"name": "x", "metric": "m", "op": "=>", "threshold": 1})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["op"]


def test_a_bad_regex_in_the_matchers_names_the_matchers_field(admin_api: APIClient) -> None:
    response = admin_api.post(
        RULES,
        {"name": "x", "metric": "m", "threshold": 1, "matchers": [{"label": "n", "op": "=~", "value": "("}]},
    )

    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["matchers"]
    assert body["detail"].startswith("matchers: matcher 1: value: '(' is not a valid regular expression")


def test_rules_filter_by_severity(client_as: Client) -> None:
    AlertRuleFactory(severity="info")
    critical = AlertRuleFactory(severity="critical")

    response = client_as(Role.VIEWER).get(RULES, {"severity": "critical"})

    assert [r["id"] for r in response.json()["results"]] == [critical.pk]
