"""The bell's websocket through the real ASGI application and the channels_redis layer: the count on
connect, a message when an alert starts firing, and refusals."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from apps.alerts import live, raising, selectors, services
from apps.alerts.consumers import CLOSE_FORBIDDEN
from apps.alerts.domain.events import EventKind
from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.domain.roles import Role
from moc_site.asgi import application
from tests.alerts.factories import AlertFactory, AlertRuleFactory
from tests.wsclient import LOCAL_ORIGIN, WebsocketCommunicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _connected() -> None:
    # AlertsConfig.ready connects it; connecting twice is harmless (dispatch_uid).
    live.connect()


async def _next_of(communicator: WebsocketCommunicator, kind: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = await communicator.poll_json(left)
        if message is not None and message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} within {timeout} s")


def test_an_anonymous_socket_is_refused() -> None:
    async def go() -> Any:
        communicator = WebsocketCommunicator(application, "/ws/alerts/", headers=[LOCAL_ORIGIN])
        return await communicator.connect(timeout=5)

    assert async_to_sync(go)() == (False, CLOSE_UNAUTHENTICATED)


def test_a_role_without_view_alert_is_refused(make_user: Callable[..., object]) -> None:
    viewers = Group.objects.get(name=Role.VIEWER.value)
    view_alert = Permission.objects.get(content_type__app_label="alerts", codename="view_alert")
    viewers.permissions.remove(view_alert)
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> Any:
        communicator = WebsocketCommunicator(application, "/ws/alerts/", headers=headers)
        return await communicator.connect(timeout=5)

    try:
        assert async_to_sync(go)() == (False, CLOSE_FORBIDDEN)
    finally:
        viewers.permissions.add(view_alert)


def test_a_viewer_gets_the_count_then_hears_an_alert_start_firing(make_user: Callable[..., object]) -> None:
    AlertFactory(series={"node": "gpu-07"})  # already firing: the count on connect
    rule = AlertRuleFactory(
        name="JobFailed", kind="event", event=EventKind.JOB_FAILED, metric="", threshold=None
    )
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    def a_job_fails() -> None:
        raising.event_raise(event=EventKind.JOB_FAILED, labels={"job": "42", "kind": "fine_tune"})

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        communicator = WebsocketCommunicator(application, "/ws/alerts/", headers=headers)
        assert (await communicator.connect(timeout=5))[0]
        count = await _next_of(communicator, "alerts.count")
        await sync_to_async(a_job_fails)()
        changed = await _next_of(communicator, "alerts.changed")
        await communicator.disconnect()
        return count, changed

    count, changed = async_to_sync(go)()

    assert count["payload"] == {"firing": 1}
    payload = changed["payload"]
    assert (payload["alertname"], payload["state"], payload["new"]) == (rule.name, "firing", True)
    assert payload["firing"] == 2
    assert payload["url"] == f"/alerts/{payload['id']}/"


def test_an_acknowledgement_lowers_the_count_without_a_new_toast(make_user: Callable[..., object]) -> None:
    alert = AlertFactory(fired_at=timezone.now())
    user = make_user(Role.OPERATOR)
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    def acknowledge() -> None:
        with transaction.atomic():
            services.alert_acknowledge(alert=alert, user=user, comment="on it")

    async def go() -> dict[str, Any]:
        communicator = WebsocketCommunicator(application, "/ws/alerts/", headers=headers)
        assert (await communicator.connect(timeout=5))[0]
        await _next_of(communicator, "alerts.count")
        await sync_to_async(acknowledge)()
        changed = await _next_of(communicator, "alerts.changed")
        await communicator.disconnect()
        return changed

    payload = async_to_sync(go)()["payload"]

    assert (payload["id"], payload["firing"], payload["new"]) == (alert.pk, 0, False)


def test_the_count_leaves_out_muted_and_acknowledged_alerts() -> None:
    now = timezone.now()
    AlertFactory(series={"n": "1"})
    AlertFactory(series={"n": "2"}, silenced=True)
    AlertFactory(series={"n": "3"}, inhibited=True)
    AlertFactory(series={"n": "4"}, acknowledged_at=now)
    AlertFactory(series={"n": "5"}, acknowledged_at=now, ack_expires_at=now - dt.timedelta(minutes=1))
    AlertFactory(series={"n": "6"}, state="pending", fired_at=None)

    assert selectors.firing_count(now=now) == 2  # the plain one and the one whose ack expired


def test_one_batch_of_changes_sends_those_that_started_firing_first() -> None:
    old = AlertFactory(series={"n": "1"}, fired_at=timezone.now() - dt.timedelta(hours=2))
    new = AlertFactory(series={"n": "2"}, fired_at=timezone.now())

    texts = live.batch_messages({old.pk, new.pk}, now=timezone.now())

    payloads = [json.loads(t)["payload"] for t in texts]
    assert [(p["id"], p["new"]) for p in payloads] == [(new.pk, True), (old.pk, False)]
    assert {p["firing"] for p in payloads} == {2}
