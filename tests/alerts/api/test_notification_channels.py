"""/api/v1/notification-channels/: admins configure where notifications go."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.alerts.models import NotificationChannel
from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, NotificationChannelFactory

pytestmark = pytest.mark.django_db

CHANNELS = "/api/v1/notification-channels/"
Client = Callable[[Role | None], APIClient]


@pytest.fixture
def admin_api(client_as: Client) -> APIClient:
    return client_as(Role.ADMIN)


def test_an_admin_creates_a_webhook_channel(admin_api: APIClient) -> None:
    response = admin_api.post(
        CHANNELS, {"name": "ops", "kind": "webhook", "config": {"url": "https://hooks.example.com/x"}}
    )

    assert response.status_code == 201
    assert NotificationChannel.objects.get().config == {"url": "https://hooks.example.com/x"}


def test_a_webhook_with_a_bad_url_names_the_config_field(admin_api: APIClient) -> None:
    response = admin_api.post(CHANNELS, {"name": "ops", "kind": "webhook", "config": {"url": "ftp://x/"}})

    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["config"]
    assert body["detail"] == "config: url: must be an http:// or https:// URL with a host, got 'ftp://x/'"


def test_an_email_channel_without_addresses_names_the_config_field(admin_api: APIClient) -> None:
    response = admin_api.post(CHANNELS, {"name": "mail", "kind": "email", "config": {}})

    assert response.status_code == 400
    assert response.json()["fields"] == {"config": ["to: is required for email channels"]}


def test_changing_the_kind_checks_the_existing_config(admin_api: APIClient) -> None:
    channel = NotificationChannelFactory(kind="webhook", config={"url": "https://x.io/"})

    response = admin_api.patch(f"{CHANNELS}{channel.pk}/", {"kind": "email"})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["config"]


def test_a_viewer_sees_only_the_host_of_a_webhook_url(client_as: Client) -> None:
    channel = NotificationChannelFactory(config={"url": "https://hooks.example.com/T0/secret"})

    body = client_as(Role.VIEWER).get(f"{CHANNELS}{channel.pk}/").json()

    assert body["config"] == {"url": "https://hooks.example.com/…"}


def test_an_admin_sees_the_whole_webhook_url(admin_api: APIClient) -> None:
    channel = NotificationChannelFactory(config={"url": "https://hooks.example.com/T0/secret"})

    body = admin_api.get(f"{CHANNELS}{channel.pk}/").json()

    assert body["config"] == {"url": "https://hooks.example.com/T0/secret"}


def test_the_preview_is_an_alertmanager_payload_of_the_firing_alerts(client_as: Client) -> None:
    channel = NotificationChannelFactory(name="ops")
    alert = AlertFactory()

    body = client_as(Role.VIEWER).get(f"{CHANNELS}{channel.pk}/preview/").json()

    assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "ops")
    assert [a["fingerprint"] for a in body["alerts"]] == [alert.fingerprint]
