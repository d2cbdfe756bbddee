"""Forwarding to a real Alertmanager (Debian's prometheus-alertmanager on a loopback port): the alert
is read back from its API v2, and ends there once it resolves."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from apps.alerts import delivering, notifying
from apps.alerts.domain.delivery import DeliveryStatus
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, Delivery
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory

BINARY = "/usr/bin/prometheus-alertmanager"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.skipif(
        not shutil.which(BINARY), reason=f"{BINARY} is not installed (scripts/test.sh installs it)"
    ),
]
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "am.yml").write_text(CONFIG)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("Alertmanager did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _forward(channel, now: dt.datetime | None = None) -> Delivery:  # type: ignore[no-untyped-def]
    assert notifying.notify(now=now or timezone.now()) == 1
    delivery = delivering.delivery_attempt(Delivery.objects.filter(channel=channel).latest("id").pk)
    assert delivery.status == DeliveryStatus.DELIVERED, delivery.error
    return delivery


def test_an_alert_is_forwarded_and_ends_when_it_resolves(alertmanager: str) -> None:
    channel = NotificationChannelFactory(kind="alertmanager", config={"url": alertmanager})
    rule = AlertRuleFactory()
    rule.channels.add(channel)
    alert = AlertFactory(rule=rule, series={"node": "gpu-01"}, annotations={"summary": "hot"})

    _forward(channel)
    [active] = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert active["labels"] == alert.labels
    assert active["annotations"] == {"summary": "hot"}
    assert active["status"]["state"] == "active"

    assert notifying.notify(now=timezone.now()) == 0  # unchanged, resend not due

    alert.state, alert.resolved_at = AlertState.RESOLVED, timezone.now()
    alert.save()
    _forward(channel)
    assert httpx.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=5).json() == []


def _active(alertmanager: str) -> list[dict]:  # type: ignore[type-arg]
    return list(httpx.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=5).json())


def test_a_retry_long_after_the_delivery_was_made_still_posts_a_firing_alert(alertmanager: str) -> None:
    channel = NotificationChannelFactory(kind="alertmanager", config={"url": alertmanager})
    rule = AlertRuleFactory()
    rule.channels.add(channel)
    alert = AlertFactory(rule=rule, series={"node": "gpu-01"})

    # Made 20 minutes ago (Alertmanager was away), sent now: endsAt is worked out at the send.
    _forward(channel, now=timezone.now() - dt.timedelta(minutes=20))

    [active] = _active(alertmanager)
    assert active["labels"] == alert.labels
    assert active["status"]["state"] == "active"


def test_a_muted_alert_is_still_forwarded_saying_why(alertmanager: str, admin_user) -> None:  # type: ignore[no-untyped-def]
    channel = NotificationChannelFactory(kind="alertmanager", config={"url": alertmanager})
    rule = AlertRuleFactory()
    rule.channels.add(channel)
    alert = AlertFactory(rule=rule, series={"node": "gpu-01"}, annotations={"summary": "hot"})
    _forward(channel)

    Alert.objects.filter(pk=alert.pk).update(acknowledged_by=admin_user, acknowledged_at=timezone.now())
    _forward(channel)  # a change: posted at once, not left to time out

    [active] = _active(alertmanager)
    assert active["labels"] == alert.labels  # the same alert there: no label added
    assert active["annotations"] == {"summary": "hot", "moc_muted": "acknowledged"}

    Alert.objects.filter(pk=alert.pk).update(state=AlertState.RESOLVED, resolved_at=timezone.now())
    _forward(channel)
    assert _active(alertmanager) == []
