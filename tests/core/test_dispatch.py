"""Sending tasks once the transaction commits, against the session's real Redis broker."""

from __future__ import annotations

from typing import Any

import pytest
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
