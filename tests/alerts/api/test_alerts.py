"""/api/v1/alerts/: reading alerts and acknowledging them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.alerts.domain.states import AlertState
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from tests.alerts.factories import AlertFactory, AlertRuleFactory

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/alerts/"
Client = Callable[[Role | None], APIClient]


def test_alerts_list_firing_first(client_as: Client) -> None:
    resolved = AlertFactory(state=AlertState.RESOLVED, series={"n": "1"})
    firing = AlertFactory(series={"n": "2"})

    response = client_as(Role.VIEWER).get(ALERTS)

    assert [a["id"] for a in response.json()["results"]] == [firing.pk, resolved.pk]


def test_an_alert_shows_its_rule_labels_and_state(client_as: Client) -> None:
    alert = AlertFactory(rule=AlertRuleFactory(name="GpuHot", severity="critical"), series={"node": "gpu-01"})

    body = client_as(Role.VIEWER).get(f"{ALERTS}{alert.pk}/").json()

    assert body["rule"] == {"id": alert.rule.pk, "name": "GpuHot", "severity": "critical"}
    assert body["labels"] == {"node": "gpu-01", "alertname": "GpuHot", "severity": "critical"}
    assert (body["state"], body["fingerprint"]) == ("firing", alert.fingerprint)


def test_alerts_filter_by_severity(client_as: Client) -> None:
    AlertFactory(rule=AlertRuleFactory(severity="info"))
    critical = AlertFactory(rule=AlertRuleFactory(severity="critical"))

    response = client_as(Role.VIEWER).get(ALERTS, {"severity": "critical"})

    assert [a["id"] for a in response.json()["results"]] == [critical.pk]


def test_alerts_filter_by_acknowledged(client_as: Client, operator: object) -> None:
    AlertFactory(series={"n": "1"})
    seen = AlertFactory(series={"n": "2"}, acknowledged_by=operator, acknowledged_at="2025-01-01T00:00:00Z")

    response = client_as(Role.VIEWER).get(ALERTS, {"acknowledged": "true"})

    assert [a["id"] for a in response.json()["results"]] == [seen.pk]


def test_acknowledging_names_the_operator(client_as: Client) -> None:
    alert = AlertFactory()

    body = client_as(Role.OPERATOR).post(f"{ALERTS}{alert.pk}/acknowledge/").json()

    assert body["acknowledged_by"]["username"].startswith("operator")
    assert body["acknowledged_at"] is not None


def test_acknowledging_is_audited(client_as: Client, django_capture_on_commit_callbacks: Callable) -> None:
    alert = AlertFactory()

    with django_capture_on_commit_callbacks(execute=True):
        client_as(Role.OPERATOR).post(f"{ALERTS}{alert.pk}/acknowledge/")

    assert AuditEvent.objects.filter(action="acknowledge", object_id=str(alert.pk)).exists()


def test_acknowledging_a_resolved_alert_is_a_conflict(client_as: Client) -> None:
    alert = AlertFactory(state=AlertState.RESOLVED)

    response = client_as(Role.OPERATOR).post(f"{ALERTS}{alert.pk}/acknowledge/")

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


def test_acknowledging_an_unknown_alert_is_404(client_as: Client) -> None:
    assert client_as(Role.OPERATOR).post(f"{ALERTS}999/acknowledge/").status_code == 404
