"""/api/v1/notification-channels/: admins configure where notifications go, see each channel's
deliveries, and send a test; a signing secret is never shown."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.alerts.domain.channels import HIDDEN
from apps.alerts.models import Delivery, NotificationChannel
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from tests.alerts.factories import AlertFactory, DeliveryFactory, NotificationChannelFactory

pytestmark = pytest.mark.django_db

CHANNELS = "/api/v1/notification-channels/"
SECRET = "s3cret-signing-key-0123456789"
Client = Callable[[Role | None], APIClient]


@pytest.fixture
def admin_api(client_as: Client) -> APIClient:
    return client_as(Role.ADMIN)


def test_an_admin_creates_a_webhook_channel_with_its_grouping(admin_api: APIClient) -> None:
    response = admin_api.post(
        CHANNELS,
        {
            "name": "ops",
            "kind": "webhook",
            "config": {"url": "https://hooks.example.com/x"},
            "group_by": ["alertname", "node"],
            "group_wait_s": 10,
        },
        format="json",
    )

    assert response.status_code == 201
    channel = NotificationChannel.objects.get()
    assert (channel.config, channel.group_by, channel.group_wait_s) == (
        {"url": "https://hooks.example.com/x"},
        ["alertname", "node"],
        10,
    )


def test_the_secret_is_never_in_a_response(admin_api: APIClient) -> None:
    created = admin_api.post(
        CHANNELS,
        {
            "name": "ops",
            "kind": "webhook",
            "config": {"url": "https://hooks.example.com/x", "secret": SECRET},
        },
        format="json",
    )
    pk = created.json()["id"]

    responses = [created, admin_api.get(f"{CHANNELS}{pk}/"), admin_api.get(CHANNELS)]

    assert NotificationChannel.objects.get().config["secret"] == SECRET
    assert all(SECRET not in r.content.decode() for r in responses)
    assert created.json()["secret_set"] is True
    assert created.json()["config"] == {"url": "https://hooks.example.com/x"}


def test_a_config_without_the_secret_keeps_it_and_an_empty_one_removes_it(admin_api: APIClient) -> None:
    channel = NotificationChannelFactory(config={"url": "https://a.example.com/", "secret": SECRET})

    admin_api.patch(f"{CHANNELS}{channel.pk}/", {"config": {"url": "https://b.example.com/"}}, format="json")
    channel.refresh_from_db()
    kept = channel.config
    admin_api.patch(
        f"{CHANNELS}{channel.pk}/", {"config": {"url": "https://b.example.com/", "secret": ""}}, format="json"
    )
    channel.refresh_from_db()

    assert kept == {"url": "https://b.example.com/", "secret": SECRET}
    assert channel.config == {"url": "https://b.example.com/"}


def test_a_template_that_reaches_for_python_internals_names_the_config_field(admin_api: APIClient) -> None:
    response = admin_api.post(
        CHANNELS,
        {
            "name": "ops",
            "kind": "webhook",
            "config": {"url": "https://hooks.example.com/x", "template": "{{ ''.__class__.__mro__ }}"},
        },
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["config"]
    assert not NotificationChannel.objects.exists()


@pytest.mark.parametrize("group_by", [["alertname", "no-dash"], ["...", "node"], "node", [1]])
def test_a_bad_group_by_names_the_group_by_field(admin_api: APIClient, group_by: object) -> None:
    response = admin_api.post(
        CHANNELS, {"name": "ops", "kind": "log", "config": {}, "group_by": group_by}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["group_by"]


def test_each_alert_alone_is_a_group_by(admin_api: APIClient) -> None:
    response = admin_api.post(
        CHANNELS, {"name": "ops", "kind": "log", "config": {}, "group_by": ["..."]}, format="json"
    )

    assert response.status_code == 201


def test_a_webhook_with_a_bad_url_names_the_config_field(admin_api: APIClient) -> None:
    response = admin_api.post(
        CHANNELS, {"name": "ops", "kind": "webhook", "config": {"url": "ftp://x/"}}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["config"]
    assert body["detail"] == "config: url: must be an http:// or https:// URL with a host, got 'ftp://x/'"


def test_an_email_channel_without_addresses_names_the_config_field(admin_api: APIClient) -> None:
    response = admin_api.post(CHANNELS, {"name": "mail", "kind": "email", "config": {}}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"config": ["to: is required for email channels"]}


def test_changing_the_kind_checks_the_existing_config(admin_api: APIClient) -> None:
    channel = NotificationChannelFactory(kind="webhook", config={"url": "https://x.io/"})

    response = admin_api.patch(f"{CHANNELS}{channel.pk}/", {"kind": "email"}, format="json")

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


def test_a_channels_deliveries_are_paginated_latest_first(client_as: Client) -> None:
    channel = NotificationChannelFactory()
    older = DeliveryFactory(channel=channel, status="failed", error="HTTP 500")
    newer = DeliveryFactory(channel=channel)
    DeliveryFactory()  # another channel's
    type(older).objects.filter(pk=older.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))

    body = client_as(Role.VIEWER).get(f"{CHANNELS}{channel.pk}/deliveries/").json()

    assert body["count"] == 2
    assert [d["id"] for d in body["results"]] == [newer.pk, older.pk]
    assert body["results"][1]["error"] == "HTTP 500"


def test_a_test_notification_is_sent_now_and_recorded(admin_api: APIClient) -> None:
    channel = NotificationChannelFactory(kind="log", config={})

    response = admin_api.post(f"{CHANNELS}{channel.pk}/test/")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["test"], body["status"], body["channel"]) == (True, "delivered", channel.pk)
    assert channel.deliveries.count() == 1


def test_an_operator_cannot_send_a_test(client_as: Client) -> None:
    channel = NotificationChannelFactory(kind="log", config={})

    assert client_as(Role.OPERATOR).post(f"{CHANNELS}{channel.pk}/test/").status_code == 403
    assert not channel.deliveries.exists()


def test_a_viewer_sees_no_credentials_in_an_alertmanager_url(client_as: Client) -> None:
    channel = NotificationChannelFactory(
        kind="alertmanager", config={"url": "http://user:pw@am.example:9093"}
    )

    listed = client_as(Role.VIEWER).get(CHANNELS)
    one = client_as(Role.VIEWER).get(f"{CHANNELS}{channel.pk}/").json()

    assert one["config"] == {"url": "http://…@am.example:9093"}
    assert "user:pw" not in listed.content.decode()


def test_a_webhook_template_is_shown_only_to_those_who_may_change_the_channel(client_as: Client) -> None:
    template = '{"routing_key": "R0UT1NG-KEY", "summary": "{{ status }}"}'
    channel = NotificationChannelFactory(config={"url": "https://events.example.com/", "template": template})

    seen = {
        role: client_as(role).get(f"{CHANNELS}{channel.pk}/").json()["config"]["template"]
        for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
    }

    assert seen == {Role.VIEWER: HIDDEN, Role.OPERATOR: HIDDEN, Role.ADMIN: template}


def test_a_deliverys_body_is_shown_only_to_those_who_may_change_the_channel(client_as: Client) -> None:
    channel = NotificationChannelFactory()
    DeliveryFactory(channel=channel, body='{"routing_key": "R0UT1NG-KEY"}')

    def body(role: Role) -> str:
        return client_as(role).get(f"{CHANNELS}{channel.pk}/deliveries/").json()["results"][0]["body"]

    assert (body(Role.VIEWER), body(Role.ADMIN)) == (HIDDEN, '{"routing_key": "R0UT1NG-KEY"}')


def test_a_test_sends_body_stays_out_of_the_audit_log(admin_api: APIClient) -> None:
    channel = NotificationChannelFactory(kind="log", config={})

    response = admin_api.post(f"{CHANNELS}{channel.pk}/test/")

    delivery = Delivery.objects.get(pk=response.json()["id"])
    row = AuditEvent.objects.get(action="create", content_type__model="delivery", object_id=str(delivery.pk))
    assert "MocTestNotification" in delivery.body
    assert response.json()["body"] == delivery.body
    assert row.changes["body"] == ["***", "***"]
    assert "MocTestNotification" not in json.dumps(row.changes)
