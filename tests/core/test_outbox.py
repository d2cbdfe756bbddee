"""The transactional outbox: a task message exists exactly when its transaction committed, is sent
right after the commit, and, when the broker could not take it, by the drainer once it can.
Several drainers never send one message twice. With Redis really stopped: tests/integration/
test_broker_outage.py."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError

from apps.core import dispatch, outbox, workers
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent, OutboxMessage
from apps.jobs import messages as job_messages
from apps.jobs import services as job_services
from tests.jobs.factories import JobFactory
from tests.procs import RedisServer, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PING = "apps.core.tasks.ping"


class Broker:
    """Stands in for the broker behind dispatch.send: takes messages while up, refuses them as kombu
    does while Redis is away."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, list[Any], dict[str, Any]]] = []
        self.refused: list[str] = []

    def send(self, name: str, *, args: Any = (), **options: Any) -> None:
        if not self.up:
            self.refused.append(name)
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append((name, list(args), options))


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    fake = Broker()
    monkeypatch.setattr(dispatch, "send", fake.send)
    return fake


def test_a_committed_message_is_sent_at_once_and_leaves_no_row(broker: Broker) -> None:
    with transaction.atomic():
        message = dispatch.send_on_commit(PING, args=[1], queue="default")
        assert OutboxMessage.objects.filter(pk=message.pk).exists()  # stored with the transaction

    [(name, args, options)] = broker.sent
    assert (name, args, options["task_id"]) == (PING, [1], message.task_id)
    assert not OutboxMessage.objects.exists()


def test_many_messages_are_stored_in_one_insert_and_sent_in_order(
    broker: Broker, django_assert_num_queries: Callable[..., Any]
) -> None:
    with transaction.atomic(), django_assert_num_queries(1):
        dispatch.send_many_on_commit(PING, [[n] for n in range(50)], queue="default")

    assert [args for _, args, _ in broker.sent] == [[n] for n in range(50)]
    assert len({options["task_id"] for _, _, options in broker.sent}) == 50
    assert not OutboxMessage.objects.exists()


def test_a_rolled_back_transaction_leaves_neither_message_nor_row(broker: Broker) -> None:
    with transaction.atomic():
        dispatch.send_on_commit(PING)
        transaction.set_rollback(True)

    assert broker.sent == []
    assert not OutboxMessage.objects.exists()


def test_a_message_the_broker_refused_stays_with_its_error_and_is_free_for_the_drainer(
    broker: Broker,
) -> None:
    broker.up = False

    with transaction.atomic():
        dispatch.send_on_commit(PING, args=[7], queue="default", priority=3)

    row = OutboxMessage.objects.get()
    assert broker.refused == [PING]
    assert (row.attempts, row.claimed_by, row.claimed_until) == (1, "", None)
    assert "Connection refused" in row.last_error
    assert (row.args, row.options) == ([7], {"queue": "default", "priority": 3})


def test_the_drainer_sends_what_waited_with_its_task_id_once_the_broker_is_back(broker: Broker) -> None:
    broker.up = False
    with transaction.atomic():
        waiting = dispatch.send_on_commit(PING, args=[7], queue="default", task_id="fixed-id")
    broker.up = True

    assert outbox.drain() == 1

    [(name, args, options)] = broker.sent
    assert (name, args, options["task_id"], options["queue"]) == (PING, [7], waiting.task_id, "default")
    assert not OutboxMessage.objects.exists()


def test_a_drain_pass_stops_at_the_first_refusal_and_hands_the_rest_back(broker: Broker) -> None:
    broker.up = False
    for n in range(3):
        OutboxMessage.objects.create(task_id=f"t-{n}", task_name=PING, args=[n])

    assert outbox.drain() == 0

    assert broker.refused == [PING]  # one bounded try a pass, not one per message
    assert list(OutboxMessage.objects.values_list("attempts", "claimed_by")) == [(1, ""), (0, ""), (0, "")]


def test_an_expired_message_is_dropped_not_sent(broker: Broker) -> None:
    OutboxMessage.objects.create(
        task_id="late", task_name=PING, expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    assert outbox.drain() == 1

    assert broker.sent == []
    assert not OutboxMessage.objects.exists()


def test_expires_in_seconds_becomes_a_deadline_that_the_send_carries(broker: Broker) -> None:
    before = timezone.now()

    dispatch.send_on_commit(PING, expires=30)

    [(_, _, options)] = broker.sent
    assert (
        before + dt.timedelta(seconds=30) <= options["expires"] <= timezone.now() + dt.timedelta(seconds=30)
    )


def test_a_message_its_sender_still_holds_waits_for_the_lease_to_end(broker: Broker) -> None:
    now = timezone.now()
    OutboxMessage.objects.create(
        task_id="held", task_name=PING, claimed_by="web-1:42", claimed_until=now + dt.timedelta(seconds=30)
    )

    assert outbox.drain(now=now) == 0
    assert outbox.drain(now=now + dt.timedelta(seconds=31)) == 1  # its sender died: taken over

    assert [options["task_id"] for _, _, options in broker.sent] == ["held"]


@pytest.mark.postgres
def test_two_drainers_at_once_never_claim_the_same_message() -> None:
    for n in range(40):
        OutboxMessage.objects.create(task_id=f"t-{n}", task_name=PING)
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def drainer(slot: int) -> None:
        start.wait()
        try:
            while batch := outbox.claim(limit=5):
                claimed[slot].extend(m.pk for m in batch)
        finally:
            connection.close()

    threads = [threading.Thread(target=drainer, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == list(OutboxMessage.objects.values_list("pk", flat=True))


def test_a_jobs_dispatched_at_is_set_when_the_drainer_sends_its_message(broker: Broker) -> None:
    job = JobFactory()
    broker.up = False
    job_services.job_dispatch(job=job)
    job.refresh_from_db()
    assert job.dispatched_at is None

    broker.up = True
    outbox.drain()

    job.refresh_from_db()
    assert broker.sent[0][0] == job_messages.JOB_RUN
    assert job.dispatched_at is not None


def test_a_drained_message_reaches_the_real_broker_with_its_fixed_task_id(redis_server: RedisServer) -> None:
    client = redis_server.client()
    OutboxMessage.objects.create(
        task_id="outbox-1", task_name=PING, args=["x"], options={"queue": "moc-outbox-test"}
    )

    assert outbox.drain() == 1

    [raw] = client.lrange("moc-outbox-test", 0, -1)
    assert b'"id": "outbox-1"' in raw


def test_what_waits_shows_in_readyz_metrics_and_the_admin(admin_client_: Client, broker: Broker) -> None:
    broker.up = False
    dispatch.send_on_commit(PING, queue="default")

    ready = admin_client_.get("/readyz").json()["checks"]["outbox"]
    metrics = Client().get("/metrics").content.decode()
    listing = admin_client_.get("/admin/core/outboxmessage/")

    assert ready["ok"] is True
    assert ready["detail"].startswith("1 task message(s) waiting to be sent, oldest ")
    assert "Connection refused" in ready["detail"]
    assert "moc_outbox_waiting 1.0" in metrics
    assert "moc_outbox_oldest_age_seconds " in metrics
    assert listing.status_code == 200
    assert PING in listing.content.decode()


def test_an_api_write_that_sends_a_message_audits_the_write_not_the_outbox_row(
    broker: Broker, client_as: Callable[..., Any]
) -> None:
    broker.up = False
    response = client_as(Role.OPERATOR).post("/api/v1/jobs/", {"kind": "selftest"}, format="json")

    assert response.status_code == 201
    assert OutboxMessage.objects.count() == 1
    audited = set(AuditEvent.objects.values_list("content_type__model", flat=True))
    assert "job" in audited
    assert "outboxmessage" not in audited


def test_a_message_refused_for_its_own_sake_is_marked_failed_and_the_rest_still_go(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        OutboxMessage.objects.create(task_id=f"t-{n}", task_name=PING, args=[n])

    def refuse_the_second(name: str, *, args: Any = (), **options: Any) -> None:
        if args == [1]:
            raise TypeError("Object of type bytes is not JSON serializable")
        broker.sent.append((name, list(args), options))

    monkeypatch.setattr(dispatch, "send", refuse_the_second)

    assert outbox.drain() == 2

    assert [args for _, args, _ in broker.sent] == [[0], [2]]
    failed = OutboxMessage.objects.get()
    assert failed.task_id == "t-1"
    assert failed.failed_at is not None
    assert failed.last_error == "TypeError: Object of type bytes is not JSON serializable"
    assert outbox.claim() == []  # kept to be looked at, never sent again
    assert outbox.describe().startswith("1 failed for good and not sent")


def test_each_sent_message_leaves_the_outbox_at_once_so_a_failing_delete_resends_only_the_one_in_hand(
    broker: Broker,
) -> None:
    for n in range(3):
        OutboxMessage.objects.create(task_id=f"t-{n}", task_name=PING, args=[n])
    with connection.cursor() as cursor:  # the database fails deleting the second row
        cursor.execute(
            "CREATE TRIGGER outbox_delete_fails BEFORE DELETE ON core_outboxmessage "
            "WHEN OLD.task_id = 't-1' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    try:
        with pytest.raises(DatabaseError, match="disk I/O error"):
            outbox.drain()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER outbox_delete_fails")

    later = timezone.now() + dispatch.LEASE + dt.timedelta(seconds=1)
    assert outbox.drain(now=later) == 2  # after the lease: the one in hand, and the one not reached

    assert [options["task_id"] for _, _, options in broker.sent] == ["t-0", "t-1", "t-1", "t-2"]
    assert not OutboxMessage.objects.exists()


def test_readyz_says_when_no_live_worker_is_there_to_drain_the_outbox(
    broker: Broker, settings: Any, redis_server: RedisServer
) -> None:
    settings.MOC_WORKER_SILENT_AFTER_S = 1
    wait_until(lambda: workers.heartbeats_settled(redis_server.client()), 10, "Redis to be up for 1 s")
    workers.beat(redis_server.client(), "default@gone", ["default"], time.time() - 60, stopped=True)
    broker.up = False
    dispatch.send_on_commit(PING, queue="default")

    detail = outbox.describe()

    assert (
        "nothing drains it: no live worker consumes default (last heard: default@gone, silent since "
        in detail
    )


def test_readyz_does_not_blame_the_workers_while_one_drains(
    broker: Broker, redis_server: RedisServer
) -> None:
    workers.beat(redis_server.client(), "default@here", ["default"], time.time())
    broker.up = False
    dispatch.send_on_commit(PING, queue="default")

    assert "nothing drains it" not in outbox.describe()


def test_a_drainer_leaves_a_message_whose_sender_holds_it_by_the_databases_clock(broker: Broker) -> None:
    with transaction.atomic():
        message = dispatch.send_on_commit(PING)
        stored = OutboxMessage.objects.get(pk=message.pk)
        assert outbox.claim() == []  # its sender's lease, set and read by the database's clock
        assert stored.claimed_until is not None
        assert stored.claimed_until > timezone.now() + dispatch.LEASE - dt.timedelta(seconds=5)
