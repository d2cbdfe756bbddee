"""Sending tasks once the transaction commits, against the session's real Redis broker."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, current_app
from django.db import transaction

from apps.core import dispatch
from apps.core.models import OutboxMessage

pytestmark = pytest.mark.django_db(transaction=True)


def test_nothing_is_sent_until_the_transaction_commits(dispatched: list) -> None:
    with transaction.atomic():
        dispatch.send_on_commit("apps.core.tasks.ping", args=["hello"], queue="default")
        assert dispatched == []

    [(name, args, options)] = dispatched
    assert (name, args, options["queue"]) == ("apps.core.tasks.ping", ["hello"], "default")
    assert OutboxMessage.objects.count() == 0


def test_nothing_is_sent_when_the_transaction_rolls_back(dispatched: list) -> None:
    with transaction.atomic():
        dispatch.send_on_commit("apps.core.tasks.ping", args=["hello"])
        transaction.set_rollback(True)

    assert dispatched == []


def test_a_broker_error_after_commit_is_logged_not_raised_and_keeps_the_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broker_down(name: str, **_: Any) -> None:
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(dispatch, "send", broker_down)
    sent: list[str] = []

    def record(sender: Any, *, name: str, **kwargs: Any) -> None:
        sent.append(name)

    dispatch.message_sent.connect(record)
    try:
        with transaction.atomic():
            dispatch.send_on_commit("apps.core.tasks.ping")
    finally:
        dispatch.message_sent.disconnect(record)

    assert sent == []
    assert "the broker is down" in caplog.text
    assert OutboxMessage.objects.get().last_error == "ConnectionError: the broker is down"


def test_a_task_sent_by_name_reaches_the_broker_with_its_options(redis_server: Any) -> None:
    client = redis_server.client()
    client.delete("moc-dispatch-test")

    dispatch.send("apps.core.tasks.ping", args=["x"], queue="moc-dispatch-test", task_id="t-1")

    [raw] = client.lrange("moc-dispatch-test", 0, -1)
    assert b'"task": "apps.core.tasks.ping"' in raw
    assert b'"id": "t-1"' in raw
    # Nobody waits on the result backend: no result is kept, and no result channel was subscribed.
    assert b'"ignore_result": true' in raw
    assert client.pubsub_numsub("celery-task-meta-t-1") == [(b"celery-task-meta-t-1", 0)]


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A listener that accepts connections and never answers: a hung Redis, or one behind a
    firewall that dropped the connection. Its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()
    for conn in held:
        conn.close()


def test_a_broker_that_never_answers_fails_the_send_within_seconds(silent_broker: str) -> None:
    # A Celery app from MOC's own settings, on the silent broker.
    probe = Celery("probe", set_as_current=False)
    probe.config_from_object("django.conf:settings", namespace="CELERY")
    probe.conf.broker_url = silent_broker
    previous = current_app._get_current_object()
    probe.set_current()
    started = time.monotonic()
    try:
        with pytest.raises(dispatch.BROKER_UNREACHABLE):
            dispatch.send("apps.core.tasks.ping", args=["x"], queue="moc-dispatch-test")
    finally:
        previous.set_current()
        probe.close()

    assert time.monotonic() - started < 15  # kombu's default is to wait forever
