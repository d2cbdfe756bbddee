"""Deliveries sent to a real local HTTP receiver and a real local SMTP server: the Alertmanager
shape, the signature, retries with backoff, failures kept."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from apps.alerts import delivering, notifying
from apps.alerts.domain.delivery import DeliveryStatus
from apps.alerts.domain.signing import HEADER, verify
from apps.alerts.models import Delivery
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory
from tests.alerts.receiver import receiver

pytestmark = pytest.mark.django_db
SECRET = "a-secret-of-at-least-16"


def _firing_for(channel, **series):  # type: ignore[no-untyped-def]
    rule = AlertRuleFactory()
    rule.channels.add(channel)
    return AlertFactory(rule=rule, series=series or {"node": "gpu-01"}, annotations={"summary": "hot"})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _notify_now(channel) -> Delivery:  # type: ignore[no-untyped-def]
    assert notifying.notify(now=timezone.now()) == 1
    return Delivery.objects.get(channel=channel)


@override_settings(MOC_PUBLIC_URL="https://moc.example.com")
def test_a_webhook_gets_the_alertmanager_payload_signed() -> None:
    with receiver() as hook:
        channel = NotificationChannelFactory(
            config={"url": hook.url + "/hook", "secret": SECRET}, group_wait_s=0
        )
        alert = _firing_for(channel)

        delivery = delivering.delivery_attempt(_notify_now(channel).pk)

    assert (delivery.status, delivery.attempts, delivery.response_status) == (
        DeliveryStatus.DELIVERED,
        1,
        200,
    )
    [request] = hook.requests
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "MOC"
    assert verify(SECRET, request.body, request.headers[HEADER], now=int(timezone.now().timestamp()))
    payload = json.loads(request.body)
    assert (payload["version"], payload["status"], payload["receiver"]) == ("4", "firing", channel.name)
    assert payload["groupLabels"] == {"alertname": alert.rule.name}
    [sent] = payload["alerts"]
    assert sent["labels"] == alert.labels
    assert sent["annotations"] == {"summary": "hot"}
    assert sent["generatorURL"] == f"https://moc.example.com/alerts/{alert.pk}/"


def test_a_template_body_is_sent_as_rendered() -> None:
    template = "{{ status | upper }} {{ alerts | length }} on {{ commonLabels.node }}"
    with receiver() as hook:
        channel = NotificationChannelFactory(config={"url": hook.url, "template": template}, group_wait_s=0)
        _firing_for(channel)
        delivering.delivery_attempt(_notify_now(channel).pk)

    [request] = hook.requests
    assert (request.body, request.headers["Content-Type"]) == (
        b"FIRING 1 on gpu-01",
        "text/plain; charset=utf-8",
    )


def test_a_500_is_retried_with_backoff_then_delivered() -> None:
    with receiver(statuses=[500]) as hook:
        channel = NotificationChannelFactory(config={"url": hook.url}, group_wait_s=0)
        _firing_for(channel)
        delivery = _notify_now(channel)

        failed = delivering.delivery_attempt(delivery.pk)
        assert (failed.status, failed.attempts, failed.response_status) == (DeliveryStatus.PENDING, 1, 500)
        assert failed.error == "HTTP 500: receiver is down"
        assert failed.next_attempt_at > timezone.now() + dt.timedelta(seconds=5)

        assert delivering.delivery_attempt(delivery.pk).attempts == 1  # not due yet: not sent again
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert delivering.deliveries_retry_due(now=timezone.now()) == 1
        done = delivering.delivery_attempt(delivery.pk)

    assert (done.status, done.attempts, done.error) == (DeliveryStatus.DELIVERED, 2, "")
    assert len(hook.requests) == 2


@override_settings(MOC_ALERT_DELIVERY_ATTEMPTS=1)
def test_a_receiver_that_is_down_fails_the_delivery_with_the_reason() -> None:
    with receiver() as hook:
        url = hook.url  # the port is closed once the receiver stops
    channel = NotificationChannelFactory(config={"url": url}, group_wait_s=0)
    _firing_for(channel)

    delivery = delivering.delivery_attempt(_notify_now(channel).pk)

    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error.startswith("could not connect")
    assert Delivery.objects.get(pk=delivery.pk).error == delivery.error


def test_a_redirect_is_not_followed() -> None:
    with receiver(statuses=[302]) as hook:
        channel = NotificationChannelFactory(config={"url": hook.url}, group_wait_s=0)
        _firing_for(channel)
        delivery = delivering.delivery_attempt(_notify_now(channel).pk)

    assert (delivery.response_status, len(hook.requests)) == (302, 1)
    assert delivery.error.startswith("HTTP 302")


def test_email_goes_through_djangos_backend() -> None:
    channel = NotificationChannelFactory(kind="email", config={"to": ["ops@example.com"]}, group_wait_s=0)
    alert = _firing_for(channel, node="gpu-07")

    delivery = delivering.delivery_attempt(_notify_now(channel).pk)

    assert delivery.status == DeliveryStatus.DELIVERED
    [message] = mail.outbox
    assert message.subject == f"[FIRING:1] alertname={alert.rule.name}"
    assert message.to == ["ops@example.com"]
    assert "node=gpu-07" in message.body
    assert "hot" in message.body


def test_email_reaches_a_real_smtp_server() -> None:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is not installed")
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
            received.append(envelope.content)
            return "250 OK"

    port = _free_port()
    controller = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        backend = "django.core.mail.backends.smtp.EmailBackend"
        with override_settings(EMAIL_BACKEND=backend, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port):
            channel = NotificationChannelFactory(
                kind="email", config={"to": ["ops@example.com"]}, group_wait_s=0
            )
            _firing_for(channel)
            delivery = delivering.delivery_attempt(_notify_now(channel).pk)
    finally:
        controller.stop()

    assert delivery.status == DeliveryStatus.DELIVERED
    [content] = received
    assert b"Subject: [FIRING:1]" in content


def test_a_channel_test_is_sent_at_once_and_audited(admin_user) -> None:  # type: ignore[no-untyped-def]
    with receiver() as hook:
        channel = NotificationChannelFactory(config={"url": hook.url})
        delivery = delivering.channel_test(channel=channel, user=admin_user)

    assert (delivery.status, delivery.test) == (DeliveryStatus.DELIVERED, True)
    assert json.loads(hook.requests[0].body)["alerts"][0]["labels"]["alertname"] == "MocTestNotification"


def test_a_failed_channel_test_returns_the_delivery_as_saved(admin_user) -> None:  # type: ignore[no-untyped-def]
    with receiver() as hook:
        url = hook.url  # closed once the receiver stops
    channel = NotificationChannelFactory(config={"url": url})

    delivery = delivering.channel_test(channel=channel, user=admin_user)

    saved = Delivery.objects.get(pk=delivery.pk)
    assert (delivery.status, delivery.next_attempt_at) == (DeliveryStatus.FAILED, None)
    assert (saved.status, saved.next_attempt_at, saved.error) == (delivery.status, None, delivery.error)
