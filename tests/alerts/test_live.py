"""The bell's websocket through the real ASGI application, the relay and a real Redis: the count on
connect, one message per batch of changes (the count and the toasts), one Redis subscription per
process whatever the number of sockets, the count re-announced when it moved without a signal, and
refusals."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from apps.alerts import live, raising, selectors, services
from apps.alerts.consumers import CLOSE_FORBIDDEN
from apps.alerts.domain.events import EventKind
from apps.alerts.models import Alert
from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
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


@pytest.fixture
def announced() -> Iterator[Callable[[float], list[dict[str, Any]]]]:
    """What is published on the bell's Redis channel from now on: a call waits `quiet` seconds past
    the last message and returns the decoded messages received since the previous call."""
    pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(live.CHANNEL)

    def read(quiet: float = 0.5) -> list[dict[str, Any]]:
        got = []
        while (item := pubsub.get_message(timeout=quiet)) is not None:
            got.append(json.loads(item["data"]))
        return got

    read(0.2)  # the subscription's confirmation
    yield read
    pubsub.close()


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
    assert payload["firing"] == 2
    (toast,) = payload["new"]
    assert (toast["alertname"], toast["severity"]) == (rule.name, rule.severity)
    assert toast["url"] == f"/alerts/{toast['id']}/"


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

    assert payload == {"firing": 0, "new": []}


def test_the_count_leaves_out_muted_and_acknowledged_alerts() -> None:
    now = timezone.now()
    AlertFactory(series={"n": "1"})
    AlertFactory(series={"n": "2"}, silenced=True)
    AlertFactory(series={"n": "3"}, inhibited=True)
    AlertFactory(series={"n": "4"}, acknowledged_at=now)
    AlertFactory(series={"n": "5"}, acknowledged_at=now, ack_expires_at=now - dt.timedelta(minutes=1))
    AlertFactory(series={"n": "6"}, state="pending", fired_at=None)

    assert selectors.firing_count(now=now) == 2  # the plain one and the one whose ack expired


def test_a_batch_toasts_only_the_alerts_that_just_started_firing_latest_first() -> None:
    now = timezone.now()
    old = AlertFactory(series={"n": "1"}, fired_at=now - dt.timedelta(hours=2))
    new = AlertFactory(series={"n": "2"}, fired_at=now - dt.timedelta(seconds=5))
    newer = AlertFactory(series={"n": "3"}, fired_at=now)
    acked = AlertFactory(series={"n": "4"}, fired_at=now, acknowledged_at=now)

    payload = live.batch_payload({old.pk, new.pk, newer.pk, acked.pk}, now=now)

    assert payload["firing"] == 3
    assert [t["id"] for t in payload["new"]] == [newer.pk, new.pk]


def test_one_batch_of_changes_is_one_redis_message_with_at_most_five_toasts(
    announced: Callable[[float], list[dict[str, Any]]],
) -> None:
    alerts = [AlertFactory(series={"n": str(n)}, fired_at=timezone.now()) for n in range(20)]

    assert live.Publisher().publish({a.pk for a in alerts})

    (message,) = announced(0.5)
    assert message["type"] == live.CHANGED
    assert message["payload"]["firing"] == 20
    assert len(message["payload"]["new"]) == live.TOASTS_MAX


def test_every_socket_of_a_process_hears_a_batch_through_one_redis_subscription(
    make_user: Callable[..., object],
) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> tuple[int, list[dict[str, Any]]]:
        sockets = [WebsocketCommunicator(application, "/ws/alerts/", headers=headers) for _ in range(3)]
        for socket in sockets:
            assert (await socket.connect(timeout=5))[0]
            await _next_of(socket, "alerts.count")
        subscribers = dict(await sync_to_async(redis_client().pubsub_numsub)(live.CHANNEL))
        await sync_to_async(live.announce)({"firing": 7, "new": []})
        heard = [await _next_of(socket, "alerts.changed") for socket in sockets]
        for socket in sockets:
            await socket.disconnect()
        return subscribers[live.CHANNEL.encode()], heard

    subscribers, heard = async_to_sync(go)()

    assert subscribers == 1  # not one per socket, nor one per client on the channel layer
    assert [m["payload"] for m in heard] == [{"firing": 7, "new": []}] * 3


def test_an_acknowledgement_that_expires_reaches_the_bell_at_the_next_round(
    announced: Callable[[float], list[dict[str, Any]]],
) -> None:
    now = timezone.now()
    alert = AlertFactory(acknowledged_at=now, ack_expires_at=now + dt.timedelta(hours=1))
    live.count_announce()
    assert [m["payload"] for m in announced(0.3)] == [{"firing": 0, "new": []}]
    live.count_announce()  # nothing moved: nothing sent
    assert announced(0.3) == []

    # The acknowledgement runs out: no signal is sent, the next round's count_announce tells.
    Alert.objects.filter(pk=alert.pk).update(ack_expires_at=now - dt.timedelta(seconds=1))
    live.count_announce()

    assert [m["payload"] for m in announced(0.3)] == [{"firing": 1, "new": []}]


def test_count_announce_survives_redis_being_down(settings: Any) -> None:
    AlertFactory()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    live.count_announce()  # logged, never raised: it ends every evaluation round


def test_the_last_announced_count_keeps_its_expiry_when_the_count_stays(
    announced: Callable[[float], list[dict[str, Any]]],
) -> None:
    AlertFactory()
    live.count_announce()
    live.count_announce()  # the same count: nothing announced, the key rewritten

    assert [m["payload"] for m in announced(0.3)] == [{"firing": 1, "new": []}]
    assert 0 < redis_client().ttl(live.COUNT_KEY) <= live.COUNT_KEY_TTL_S
