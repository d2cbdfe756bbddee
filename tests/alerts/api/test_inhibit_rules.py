"""/api/v1/inhibit-rules/: admins say which firing alerts mute which others."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.alerts.models import InhibitRule
from apps.core.domain.roles import Role
from tests.alerts.factories import InhibitRuleFactory

pytestmark = pytest.mark.django_db

INHIBIT = "/api/v1/inhibit-rules/"
Client = Callable[[Role | None], APIClient]
NODE_DOWN = {
    "name": "node down mutes its devices",
    "source_matchers": 'alertname=~"NodeDown|NodeLost"',
    "target_matchers": [{"label": "device", "op": "=~", "value": ".+"}],
    "equal": ["node"],
}


def test_an_admin_creates_an_inhibit_rule_with_text_or_list_matchers(client_as: Client) -> None:
    response = client_as(Role.ADMIN).post(INHIBIT, NODE_DOWN, format="json")

    assert response.status_code == 201, response.json()
    rule = InhibitRule.objects.get()
    assert rule.source_matchers == [{"label": "alertname", "op": "=~", "value": "NodeDown|NodeLost"}]
    assert (rule.equal, response.json()["target_text"]) == (["node"], 'device=~".+"')


def test_a_source_that_matches_every_alert_names_the_source_matchers_field(client_as: Client) -> None:
    response = client_as(Role.ADMIN).post(
        INHIBIT, {**NODE_DOWN, "source_matchers": 'node=~".*"'}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["source_matchers"]


def test_a_bad_label_name_in_equal_names_the_equal_field(client_as: Client) -> None:
    response = client_as(Role.ADMIN).post(INHIBIT, {**NODE_DOWN, "equal": ["node name"]}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"equal": ["'node name' is not a label name"]}


def test_an_admin_disables_one(client_as: Client) -> None:
    rule = InhibitRuleFactory()

    response = client_as(Role.ADMIN).patch(f"{INHIBIT}{rule.pk}/", {"enabled": False}, format="json")

    assert response.status_code == 200
    assert InhibitRule.objects.get(pk=rule.pk).enabled is False


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 201)])
def test_only_admins_create_inhibit_rules(client_as: Client, role: Role, status: int) -> None:
    assert client_as(role).post(INHIBIT, NODE_DOWN, format="json").status_code == status


def test_a_viewer_reads_them(client_as: Client) -> None:
    rule = InhibitRuleFactory()

    body = client_as(Role.VIEWER).get(INHIBIT).json()

    assert [r["id"] for r in body["results"]] == [rule.pk]
