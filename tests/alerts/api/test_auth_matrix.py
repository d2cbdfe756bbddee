"""Who may do what on the alerting endpoints: viewers read; operators acknowledge and
silence; only admins configure rules and channels."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory, SilenceFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]

RULE = {"name": "GpuHot", "metric": "DCGM_FI_DEV_GPU_TEMP", "op": ">", "threshold": 85, "for_seconds": 60}
CHANNEL = {"name": "ops", "kind": "webhook", "config": {"url": "https://hooks.example.com/x"}}


def silence_body() -> dict:
    ends = (timezone.now() + timezone.timedelta(hours=1)).isoformat()
    return {"matchers": [{"label": "node", "op": "=", "value": "gpu-01"}], "ends_at": ends, "comment": "fans"}


LISTS = [
    "/api/v1/alert-rules/",
    "/api/v1/alerts/",
    "/api/v1/alerts/history/",
    "/api/v1/silences/",
    "/api/v1/notification-channels/",
    "/api/v1/inhibit-rules/",
    "/api/v1/alert-metrics/",
]


@pytest.mark.parametrize("url", LISTS)
def test_anonymous_callers_read_nothing(client_as: Client, url: str) -> None:
    assert client_as(None).get(url).status_code in {401, 403}


@pytest.mark.parametrize("url", LISTS)
def test_a_viewer_reads_every_alerting_list(client_as: Client, url: str) -> None:
    assert client_as(Role.VIEWER).get(url).status_code == 200


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 201)])
def test_only_admins_create_rules(client_as: Client, role: Role, status: int) -> None:
    assert client_as(role).post("/api/v1/alert-rules/", RULE).status_code == status


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 200)])
def test_only_admins_change_rules(client_as: Client, role: Role, status: int) -> None:
    rule = AlertRuleFactory()

    assert client_as(role).patch(f"/api/v1/alert-rules/{rule.pk}/", {"threshold": 90}).status_code == status


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 204)])
def test_only_admins_delete_rules(client_as: Client, role: Role, status: int) -> None:
    rule = AlertRuleFactory()

    assert client_as(role).delete(f"/api/v1/alert-rules/{rule.pk}/").status_code == status


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 201)])
def test_only_admins_create_channels(client_as: Client, role: Role, status: int) -> None:
    assert client_as(role).post("/api/v1/notification-channels/", CHANNEL).status_code == status


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 200), (Role.ADMIN, 200)])
def test_operators_and_admins_acknowledge_alerts(client_as: Client, role: Role, status: int) -> None:
    alert = AlertFactory()

    assert client_as(role).post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code == status


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 201), (Role.ADMIN, 201)])
def test_operators_and_admins_create_silences(client_as: Client, role: Role, status: int) -> None:
    assert client_as(role).post("/api/v1/silences/", silence_body()).status_code == status


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 200)])
def test_operators_expire_silences(client_as: Client, role: Role, status: int) -> None:
    silence = SilenceFactory()

    assert client_as(role).post(f"/api/v1/silences/{silence.pk}/expire/").status_code == status


def test_nobody_deletes_a_silence_they_expire_it(client_as: Client) -> None:
    silence = SilenceFactory()

    assert client_as(Role.ADMIN).delete(f"/api/v1/silences/{silence.pk}/").status_code == 405


def test_alerts_cannot_be_written_directly(client_as: Client) -> None:
    alert = AlertFactory()

    assert (
        client_as(Role.ADMIN).patch(f"/api/v1/alerts/{alert.pk}/", {"state": "resolved"}).status_code == 405
    )


def test_a_viewer_cannot_replace_a_channel(client_as: Client) -> None:
    channel = NotificationChannelFactory()

    response = client_as(Role.VIEWER).put(f"/api/v1/notification-channels/{channel.pk}/", CHANNEL)

    assert response.status_code == 403


def test_an_operators_key_acknowledges_alerts(key_client: Callable[..., APIClient]) -> None:
    alert = AlertFactory()

    assert key_client(Role.OPERATOR).post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code == 200


def test_a_viewer_key_of_an_operator_cannot_silence(key_client: Callable[..., APIClient]) -> None:
    client = key_client(Role.VIEWER, owner_role=Role.OPERATOR)

    assert client.post("/api/v1/silences/", silence_body()).status_code == 403


def test_an_admins_key_creates_a_channel(key_client: Callable[..., APIClient]) -> None:
    assert key_client(Role.ADMIN).post("/api/v1/notification-channels/", CHANNEL).status_code == 201


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 200), (Role.ADMIN, 200)])
def test_operators_and_admins_unacknowledge_alerts(client_as: Client, role: Role, status: int) -> None:
    alert = AlertFactory()

    assert client_as(role).post(f"/api/v1/alerts/{alert.pk}/unacknowledge/").status_code == status


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 201), (Role.ADMIN, 201)])
def test_operators_and_admins_silence_an_alert(client_as: Client, role: Role, status: int) -> None:
    alert = AlertFactory()
    body = {"duration_s": 600, "comment": "fans"}

    assert (
        client_as(role).post(f"/api/v1/alerts/{alert.pk}/silence/", body, format="json").status_code == status
    )


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 201)])
def test_only_admins_send_a_test_notification(client_as: Client, role: Role, status: int) -> None:
    channel = NotificationChannelFactory(kind="log", config={})

    assert client_as(role).post(f"/api/v1/notification-channels/{channel.pk}/test/").status_code == status


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_everyone_with_a_role_previews_rules(client_as: Client, role: Role) -> None:
    rule = AlertRuleFactory()
    client = client_as(role)

    assert client.post("/api/v1/alert-rules/preview/", RULE, format="json").status_code == 200
    assert client.get(f"/api/v1/alert-rules/{rule.pk}/preview/").status_code == 200


def test_a_viewer_cannot_read_a_channels_secret_either(client_as: Client) -> None:
    channel = NotificationChannelFactory(config={"url": "https://x.io/a", "secret": "0123456789abcdef-key"})

    response = client_as(Role.VIEWER).get(f"/api/v1/notification-channels/{channel.pk}/")

    assert "0123456789abcdef-key" not in response.content.decode()
