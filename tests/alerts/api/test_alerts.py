"""/api/v1/alerts/: reading alerts, acknowledging them, silencing them, and their history."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, Silence
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from tests.alerts.factories import AlertFactory, AlertRuleFactory

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/alerts/"
Client = Callable[[Role | None], APIClient]


@pytest.fixture
def operator_api(client_as: Client) -> APIClient:
    return client_as(Role.OPERATOR)


def test_alerts_list_firing_first(client_as: Client) -> None:
    resolved = AlertFactory(state=AlertState.RESOLVED, series={"n": "1"})
    pending = AlertFactory(state=AlertState.PENDING, series={"n": "2"}, fired_at=None)
    firing = AlertFactory(series={"n": "3"})

    response = client_as(Role.VIEWER).get(ALERTS)

    assert [a["id"] for a in response.json()["results"]] == [firing.pk, pending.pk, resolved.pk]


def test_an_alert_shows_its_rule_labels_values_and_marks(client_as: Client) -> None:
    alert = AlertFactory(
        rule=AlertRuleFactory(name="GpuHot", severity="critical"),
        series={"node": "gpu-01"},
        annotations={"summary": "gpu-01 is at 91 °C"},
        fired_value=88.0,
        peak_value=93.0,
        inhibited=True,
    )

    body = client_as(Role.VIEWER).get(f"{ALERTS}{alert.pk}/").json()

    assert body["rule"] == {"id": alert.rule.pk, "name": "GpuHot", "severity": "critical"}
    assert body["labels"] == {"node": "gpu-01", "alertname": "GpuHot", "severity": "critical"}
    assert (body["state"], body["fingerprint"]) == ("firing", alert.fingerprint)
    assert body["annotations"] == {"summary": "gpu-01 is at 91 °C"}
    assert (body["value"], body["fired_value"], body["peak_value"]) == (91.0, 88.0, 93.0)
    assert (body["silenced"], body["inhibited"], body["muted"], body["acknowledged"]) == (
        False,
        True,
        True,
        False,
    )
    assert body["occurrences"] == 1


def test_alerts_filter_by_severity(client_as: Client) -> None:
    AlertFactory(rule=AlertRuleFactory(severity="info"))
    critical = AlertFactory(rule=AlertRuleFactory(severity="critical"))

    response = client_as(Role.VIEWER).get(ALERTS, {"severity": "critical"})

    assert [a["id"] for a in response.json()["results"]] == [critical.pk]


def test_an_expired_acknowledgement_does_not_count_as_acknowledged(
    client_as: Client, operator: object
) -> None:
    now = timezone.now()
    AlertFactory(series={"n": "1"})
    AlertFactory(
        series={"n": "2"}, acknowledged_by=operator, acknowledged_at=now, ack_expires_at=now - dt.timedelta(1)
    )
    seen = AlertFactory(series={"n": "3"}, acknowledged_by=operator, acknowledged_at=now)

    response = client_as(Role.VIEWER).get(ALERTS, {"acknowledged": "true"})

    assert [a["id"] for a in response.json()["results"]] == [seen.pk]


def test_alerts_filter_by_muted(client_as: Client) -> None:
    AlertFactory(series={"n": "1"})
    silenced = AlertFactory(series={"n": "2"}, silenced=True)

    response = client_as(Role.VIEWER).get(ALERTS, {"muted": "true"})

    assert [a["id"] for a in response.json()["results"]] == [silenced.pk]


def test_acknowledging_records_who_the_comment_and_the_expiry(operator_api: APIClient) -> None:
    alert = AlertFactory()
    before = timezone.now()

    response = operator_api.post(
        f"{ALERTS}{alert.pk}/acknowledge/", {"comment": "swapping the fan", "expires_in_s": 3600}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["acknowledged_by"]["username"].startswith("operator")
    assert (body["acknowledged"], body["ack_comment"]) == (True, "swapping the fan")
    expires = dt.datetime.fromisoformat(body["ack_expires_at"])
    assert before + dt.timedelta(seconds=3600) <= expires <= timezone.now() + dt.timedelta(seconds=3600)


def test_acknowledging_again_replaces_the_comment_and_the_expiry(operator_api: APIClient) -> None:
    alert = AlertFactory()
    until = (timezone.now() + dt.timedelta(hours=2)).isoformat()
    operator_api.post(f"{ALERTS}{alert.pk}/acknowledge/", {"comment": "looking", "expires_in_s": 60})

    body = operator_api.post(
        f"{ALERTS}{alert.pk}/acknowledge/", {"comment": "fan ordered", "expires_at": until}
    ).json()

    assert body["ack_comment"] == "fan ordered"
    assert dt.datetime.fromisoformat(body["ack_expires_at"]) == dt.datetime.fromisoformat(until)


def test_unacknowledging_clears_the_acknowledgement(operator_api: APIClient) -> None:
    alert = AlertFactory()
    operator_api.post(f"{ALERTS}{alert.pk}/acknowledge/", {"comment": "looking"})

    response = operator_api.post(f"{ALERTS}{alert.pk}/unacknowledge/")

    assert response.status_code == 200
    body = response.json()
    assert (body["acknowledged"], body["acknowledged_by"], body["ack_comment"]) == (False, None, "")


def test_acknowledging_and_unacknowledging_are_audited(
    operator_api: APIClient, django_capture_on_commit_callbacks: Callable
) -> None:
    alert = AlertFactory()

    with django_capture_on_commit_callbacks(execute=True):
        operator_api.post(f"{ALERTS}{alert.pk}/acknowledge/", {"comment": "on it"})
        operator_api.post(f"{ALERTS}{alert.pk}/unacknowledge/")

    ack = AuditEvent.objects.get(action="acknowledge", object_id=str(alert.pk))
    assert ack.changes["ack_comment"] == ["", "on it"]
    assert AuditEvent.objects.filter(action="unacknowledge", object_id=str(alert.pk)).exists()


def test_an_expiry_in_the_past_names_the_expires_at_field(operator_api: APIClient) -> None:
    alert = AlertFactory()
    past = (timezone.now() - dt.timedelta(minutes=1)).isoformat()

    response = operator_api.post(f"{ALERTS}{alert.pk}/acknowledge/", {"expires_at": past})

    assert response.status_code == 400
    assert response.json()["fields"] == {"expires_at": ["must be in the future"]}
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None


def test_an_expiry_given_twice_names_the_expires_in_s_field(operator_api: APIClient) -> None:
    alert = AlertFactory()
    later = (timezone.now() + dt.timedelta(hours=1)).isoformat()

    response = operator_api.post(
        f"{ALERTS}{alert.pk}/acknowledge/", {"expires_at": later, "expires_in_s": 60}
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["expires_in_s"]


def test_acknowledging_a_resolved_alert_is_a_conflict(operator_api: APIClient) -> None:
    alert = AlertFactory(state=AlertState.RESOLVED)

    response = operator_api.post(f"{ALERTS}{alert.pk}/acknowledge/")

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


def test_acknowledging_an_unknown_alert_is_404(operator_api: APIClient) -> None:
    assert operator_api.post(f"{ALERTS}999/acknowledge/").status_code == 404


def test_silencing_an_alert_matches_its_labels_but_severity_until_it_resolves(
    operator_api: APIClient,
) -> None:
    alert = AlertFactory(rule=AlertRuleFactory(name="GpuHot"), series={"node": "gpu-01", "gpu": "0"})

    response = operator_api.post(
        f"{ALERTS}{alert.pk}/silence/", {"duration_s": 7200, "comment": "fan swap"}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["matchers"] == [
        {"label": "alertname", "op": "=", "value": "GpuHot"},
        {"label": "gpu", "op": "=", "value": "0"},
        {"label": "node", "op": "=", "value": "gpu-01"},
    ]
    assert (body["alert"], body["expire_on_resolve"], body["status"]) == (alert.pk, True, "active")
    assert Alert.objects.get(pk=alert.pk).silenced is True


def test_silencing_an_alert_needs_an_end(operator_api: APIClient) -> None:
    alert = AlertFactory()

    response = operator_api.post(f"{ALERTS}{alert.pk}/silence/", {"comment": "x"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["ends_at"]
    assert not Silence.objects.exists()


def test_a_resolved_alert_cannot_be_silenced_until_it_resolves(operator_api: APIClient) -> None:
    alert = AlertFactory(state=AlertState.RESOLVED)

    response = operator_api.post(
        f"{ALERTS}{alert.pk}/silence/", {"duration_s": 60, "comment": "x"}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["expire_on_resolve"]


def test_the_history_counts_what_fired_per_rule(client_as: Client) -> None:
    rule = AlertRuleFactory(name="GpuHot")
    AlertFactory(rule=rule, series={"n": "1"})
    AlertFactory(rule=rule, series={"n": "2"}, state=AlertState.RESOLVED, resolved_at=timezone.now())

    response = client_as(Role.VIEWER).get(f"{ALERTS}history/", {"days": 7})

    assert response.status_code == 200
    body = response.json()
    assert body["days"] == 7
    assert [(r["name"], r["fired"]) for r in body["rules"]] == [("GpuHot", 2)]


@pytest.mark.parametrize("days", ["0", "100000", "soon"])
def test_a_history_span_out_of_range_names_the_days_field(client_as: Client, days: str) -> None:
    response = client_as(Role.VIEWER).get(f"{ALERTS}history/", {"days": days})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["days"]


def test_a_plain_history_request_fits_a_short_retention(client_as: Client, settings: Any) -> None:
    settings.MOC_ALERT_RETENTION_DAYS = 7

    plain = client_as(Role.VIEWER).get(f"{ALERTS}history/")
    longer = client_as(Role.VIEWER).get(f"{ALERTS}history/", {"days": 8})

    assert (plain.status_code, plain.json()["days"]) == (200, 7)
    assert longer.status_code == 400
    assert longer.json()["fields"]["days"][0].startswith("at most 7 ")


def test_a_plain_history_request_spans_thirty_days(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(f"{ALERTS}history/").json()["days"] == 30
