"""/api/v1/silences/: operators mute alerts for a while, and expire silences early."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.alerts.models import Silence
from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, SilenceFactory

pytestmark = pytest.mark.django_db

SILENCES = "/api/v1/silences/"
Client = Callable[[Role | None], APIClient]


@pytest.fixture
def operator_api(client_as: Client) -> APIClient:
    return client_as(Role.OPERATOR)


def in_hours(hours: float) -> str:
    return (timezone.now() + dt.timedelta(hours=hours)).isoformat()


def test_an_operator_creates_an_active_silence_credited_to_them(operator_api: APIClient) -> None:
    response = operator_api.post(
        SILENCES,
        {
            "matchers": [{"label": "node", "op": "=~", "value": "gpu-0[12]"}],
            "ends_at": in_hours(2),
            "comment": "fans",
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["created_by"]["username"]) == ("active", "operator-1")
    assert body["matchers"] == [{"label": "node", "op": "=~", "value": "gpu-0[12]"}]


def test_a_bad_regex_names_the_matchers_field(operator_api: APIClient) -> None:
    response = operator_api.post(
        SILENCES,
        {
            "matchers": [{"label": "node", "op": "=~", "value": "gpu-(["}],
            "ends_at": in_hours(1),
            "comment": "x",
        },
    )

    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["matchers"]
    assert "not a valid regular expression" in body["fields"]["matchers"][0]


def test_an_end_before_the_start_names_the_ends_at_field(operator_api: APIClient) -> None:
    response = operator_api.post(
        SILENCES,
        {
            "matchers": [{"label": "node", "op": "=", "value": "gpu-01"}],
            "starts_at": in_hours(3),
            "ends_at": in_hours(2),
            "comment": "x",
        },
    )

    assert response.status_code == 400
    assert response.json()["fields"] == {"ends_at": ["must be after starts_at"]}


def test_a_missing_end_names_the_ends_at_field(operator_api: APIClient) -> None:
    response = operator_api.post(
        SILENCES, {"matchers": [{"label": "node", "op": "=", "value": "gpu-01"}], "comment": "x"}
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["ends_at"]


def test_an_operator_extends_a_silence(operator_api: APIClient) -> None:
    silence = SilenceFactory()
    later = timezone.now() + dt.timedelta(hours=6)

    response = operator_api.patch(f"{SILENCES}{silence.pk}/", {"ends_at": later.isoformat()})

    assert response.status_code == 200
    assert Silence.objects.get(pk=silence.pk).ends_at == later


def test_editing_an_expired_silence_is_a_conflict(operator_api: APIClient) -> None:
    now = timezone.now()
    silence = SilenceFactory(starts_at=now - dt.timedelta(hours=2), ends_at=now - dt.timedelta(hours=1))

    response = operator_api.patch(f"{SILENCES}{silence.pk}/", {"comment": "more"})

    assert response.status_code == 409


def test_expiring_a_silence_ends_it(operator_api: APIClient) -> None:
    silence = SilenceFactory()

    response = operator_api.post(f"{SILENCES}{silence.pk}/expire/")

    assert response.status_code == 200
    assert response.json()["status"] == "expired"


def test_silences_filter_by_status(client_as: Client) -> None:
    now = timezone.now()
    active = SilenceFactory()
    SilenceFactory(starts_at=now - dt.timedelta(hours=2), ends_at=now - dt.timedelta(hours=1))

    response = client_as(Role.VIEWER).get(SILENCES, {"status": "active"})

    assert [s["id"] for s in response.json()["results"]] == [active.pk]


def test_matchers_may_be_written_in_alertmanagers_text_form(operator_api: APIClient) -> None:
    response = operator_api.post(
        SILENCES, {"matchers": 'node=~"gpu-0[12]"', "ends_at": in_hours(1), "comment": "fans"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["matchers"] == [{"label": "node", "op": "=~", "value": "gpu-0[12]"}]


def test_a_silence_matching_everything_names_the_matchers_field(operator_api: APIClient) -> None:
    response = operator_api.post(
        SILENCES, {"matchers": 'node=~".*"', "ends_at": in_hours(1), "comment": "x"}, format="json"
    )

    assert response.status_code == 400
    assert "silence everything" in response.json()["fields"]["matchers"][0]


def test_a_silence_made_for_an_alert_can_end_when_it_resolves(operator_api: APIClient) -> None:
    alert = AlertFactory(series={"node": "gpu-01"})

    response = operator_api.post(
        SILENCES,
        {
            "matchers": 'node="gpu-01"',
            "ends_at": in_hours(1),
            "comment": "reboot",
            "alert": alert.pk,
            "expire_on_resolve": True,
        },
        format="json",
    )

    assert response.status_code == 201
    assert (response.json()["alert"], response.json()["expire_on_resolve"]) == (alert.pk, True)


def test_expire_on_resolve_without_an_alert_names_the_field(operator_api: APIClient) -> None:
    response = operator_api.post(
        SILENCES,
        {"matchers": 'node="gpu-01"', "ends_at": in_hours(1), "comment": "x", "expire_on_resolve": True},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["expire_on_resolve"]


def test_a_new_silence_marks_the_open_alerts_it_matches(operator_api: APIClient) -> None:
    matched = AlertFactory(series={"node": "gpu-01"})
    other = AlertFactory(series={"node": "gpu-02"})

    operator_api.post(
        SILENCES, {"matchers": 'node="gpu-01"', "ends_at": in_hours(1), "comment": "x"}, format="json"
    )

    matched.refresh_from_db()
    other.refresh_from_db()
    assert (matched.silenced, other.silenced) == (True, False)


def test_expiring_a_silence_unmarks_its_alerts(operator_api: APIClient) -> None:
    alert = AlertFactory(series={"node": "gpu-01"}, silenced=True)
    silence = SilenceFactory()

    operator_api.post(f"{SILENCES}{silence.pk}/expire/")

    alert.refresh_from_db()
    assert alert.silenced is False
