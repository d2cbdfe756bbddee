"""Inference when what it needs is gone: a device worker gone silent (before the request is sent,
or while it waits), a burst of requests for one device, a version whose placements were lost, and
Redis out of reach. Each refusal is fast, says why, and never a 500.

No device worker runs here: a worker's liveness is what it leaves in Redis, its beats
(apps.core.workers.beat, written as a worker would, at the moment it would have), and a
worker's answer is pushed onto the reply list by the stand-in for sending."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core import dispatch, workers
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.fleet.domain.states import NodeState
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import inference, messages
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement, ServingProfile
from apps.serving.resilience import Breakers, Bulkhead
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.models.factories import ModelVersionFactory
from tests.procs import RedisServer, free_port, wait_until
from tests.serving.factories import PlacementFactory
from tests.serving.test_resilience import Holder

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]
P = PlacementState
ASK = {"task": "generate", "input": {"prompt": "Once upon a time", "max_new_tokens": 4}}
SILENT_AFTER_S = 4


@pytest.fixture(autouse=True)
def _silence_settles(settings: Any) -> None:
    """A worker silent for 4 s is dead; Redis must have been up that long for silence to count."""
    settings.MOC_WORKER_SILENT_AFTER_S = SILENT_AFTER_S
    wait_until(lambda: workers.heartbeats_settled(redis_client()), 10, "Redis to be up that long")


@pytest.fixture
def sent(dispatched: list[tuple]) -> list[tuple]:
    """(task name, args, options) of what was sent to the device workers, none of which runs here."""
    return dispatched


def lm() -> Any:
    return ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        estimated_vram_bytes=GIB,
        validation_state=ValidationState.VALID,
    )


def loaded(version: Any = None, **device: Any) -> Placement:
    return PlacementFactory(
        version=version or lm(), device=DeviceFactory(**device), state=P.LOADED, reserved_bytes=GIB
    )


def heard(queue: str, *, ago_s: float = 0.0, stopped: bool = False) -> float:
    """The last beat of the worker consuming `queue`, sent `ago_s` seconds ago; when that was.
    Its TTL key goes at once, as it would have expired by now."""
    hostname = f"{queue}@host"
    at = time.time() - ago_s
    with time_machine.travel(at, tick=False):
        workers.beat(redis_client(), hostname, [queue], started=at - 60, stopped=stopped)
    if ago_s > SILENT_AFTER_S:
        redis_client().delete(f"{workers.KEY_PREFIX}{hostname}")
    return at


def shown(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def ask(client: APIClient, version: Any) -> Any:
    return client.post(f"/api/v1/model-versions/{version.pk}/infer/", ASK, format="json")


def test_a_request_for_a_silent_worker_is_a_fast_503_naming_the_node_and_since_when(
    client_as: Client, sent: list
) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    since = heard(placement.device.queue, ago_s=25)

    began = time.monotonic()
    response = ask(client_as(Role.OPERATOR), placement.version)

    assert time.monotonic() - began < 3  # of a 30 s timeout
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "worker_silent"
    silent = re.escape(f"node-b's worker for gpu.node-b.0 has been silent since {shown(since)}")
    assert re.search(silent + r" \(2[5-7] s\)", body["detail"])
    assert "No other device can take it now" in body["detail"]
    assert [s for s in sent if s[0] == messages.PLACEMENT_INFER] == []  # nobody consumes its queue
    placement.refresh_from_db()
    assert placement.state == P.LOST
    assert "node-b's worker for gpu.node-b.0 has been silent since" in placement.error


def test_a_silent_workers_version_nothing_else_can_take_is_asked_of_its_device_again(
    client_as: Client, sent: list
) -> None:
    """Should the worker only have looked dead, it loads the version again; one that is dead never
    takes the request, which the reaper ends."""
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue, ago_s=25)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    assert (
        "No other device can take it now; it is being loaded on node-b/gpu0 again, which takes it "
        "only once its worker answers." in response.json()["detail"]
    )
    again = Placement.objects.get(version=placement.version, state=P.REQUESTED)
    assert again.device_id == placement.device_id
    assert Placement.objects.get(pk=placement.pk).state == P.LOST
    # Until its worker answers, or the request is given up, the next request hears why it waits.
    later = ask(client_as(Role.OPERATOR), placement.version)
    assert later.status_code == 503
    assert (
        "it is being loaded on node-b/gpu0 again, which takes it only once its worker answers"
        in (later.json()["detail"])
    )
    assert "node-b's worker for gpu.node-b.0 has been silent since" in later.json()["detail"]


def test_every_silent_placement_is_lost_and_the_refusal_points_at_none_of_them(
    client_as: Client, sent: list
) -> None:
    on_b = loaded(node=NodeFactory(name="node-b"), index=0)
    on_c = loaded(on_b.version, node=NodeFactory(name="node-c"), index=0)
    heard(on_b.device.queue, ago_s=25)
    heard(on_c.device.queue, ago_s=25)
    elsewhere = DeviceFactory(node=NodeFactory(name="node-a"), index=0, capacity_bytes=76 * GIB)

    response = ask(client_as(Role.OPERATOR), on_b.version)

    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "node-b's worker for gpu.node-b.0 has been silent since" in detail
    assert "node-c's worker for gpu.node-c.0 has been silent since" in detail
    assert "It is being loaded on node-a/gpu0 instead; try again shortly." in detail
    assert Placement.objects.get(pk=on_b.pk).state == P.LOST
    assert Placement.objects.get(pk=on_c.pk).state == P.LOST
    (again,) = Placement.objects.filter(version=on_b.version, state=P.REQUESTED)
    assert again.device == elsewhere


def test_a_silent_workers_placement_is_loaded_elsewhere_and_the_refusal_says_where(
    client_as: Client, sent: list
) -> None:
    node_b = NodeFactory(name="node-b")
    placement = loaded(node=node_b, index=0)
    # A tighter fit on the same node, whose worker is silent too: not a place to load it again.
    DeviceFactory(node=node_b, index=1, capacity_bytes=4 * GIB)
    heard(placement.device.queue, ago_s=25)
    heard("gpu.node-b.1", ago_s=25)
    elsewhere = DeviceFactory(node=NodeFactory(name="node-a"), index=0, capacity_bytes=76 * GIB)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    assert "It is being loaded on node-a/gpu0 instead; try again shortly." in response.json()["detail"]
    assert int(response["Retry-After"]) >= 1
    again = Placement.objects.get(version=placement.version, state=P.REQUESTED)
    assert again.device == elsewhere


def test_a_worker_that_stopped_cleanly_is_named_as_stopped(client_as: Client, sent: list) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    since = heard(placement.device.queue, ago_s=3, stopped=True)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    stopped = re.escape(f"node-b's worker for gpu.node-b.0 stopped at {shown(since)}")
    assert re.search(stopped + r" \([3-5] s ago\)", response.json()["detail"])


def test_a_request_goes_to_the_versions_placement_whose_worker_is_alive(
    client_as: Client, sent: list
) -> None:
    dead = loaded(node=NodeFactory(name="node-b"), index=0)
    live = loaded(dead.version, node=NodeFactory(name="node-a"), index=0)
    heard(dead.device.queue, ago_s=25)
    heard(live.device.queue)
    ServingProfile.objects.create(version=dead.version, request_timeout_s=0.2)

    response = ask(client_as(Role.OPERATOR), dead.version)

    assert response.status_code == 504  # nobody answers here; what matters is where it went
    (infer,) = [s for s in sent if s[0] == messages.PLACEMENT_INFER]
    assert infer[2]["queue"] == live.device.queue
    assert Placement.objects.get(pk=dead.pk).state == P.LOST
    assert Placement.objects.get(pk=live.pk).state == P.LOADED


def test_a_worker_that_dies_while_a_request_waits_ends_the_wait_within_a_slice(
    client_as: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue)
    ServingProfile.objects.create(version=placement.version, request_timeout_s=30)

    def send_then_die(name: str, **_: Any) -> None:
        # The request reaches the queue, and its worker dies without answering it: its last beat
        # is long past by the time the wait looks again.
        heard(placement.device.queue, ago_s=25)

    monkeypatch.setattr(dispatch, "send", send_then_die)

    began = time.monotonic()
    response = ask(client_as(Role.OPERATOR), placement.version)

    assert time.monotonic() - began < 3
    assert response.status_code == 503
    assert response.json()["error"] == "worker_silent"
    assert "node-b's worker for gpu.node-b.0 has been silent since" in response.json()["detail"]
    assert Placement.objects.get(pk=placement.pk).state == P.LOST
    breaker = Breakers(redis_client()).get([placement.pk])[placement.pk]
    assert "device_lost" in breaker.last_error


def test_a_request_sent_before_its_worker_said_goodbye_waits_for_the_answer_it_finishes(
    client_as: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue)

    def send_then_stop(name: str, *, args: Any = (), **_: Any) -> None:
        # Its worker starts its shutdown (a SIGTERM) with the request in hand: it says goodbye at
        # once, and answers the request it holds a couple of slices later.
        heard(placement.device.queue, stopped=True)
        answer = json.dumps({"ok": True, "result": {"text": "!"}})
        threading.Timer(2.5, redis_client().rpush, args=(args[2], answer)).start()

    monkeypatch.setattr(dispatch, "send", send_then_stop)
    client = client_as(Role.OPERATOR)

    response = ask(client, placement.version)

    assert response.status_code == 200, response.json()
    assert response.json()["result"] == {"text": "!"}
    assert Placement.objects.get(pk=placement.pk).state == P.LOADED
    # A new request is not sent to a worker that is shutting down.
    refused = ask(client, placement.version)
    assert refused.status_code == 503
    assert "node-b's worker for gpu.node-b.0 stopped at" in refused.json()["detail"]


def restarted(queue: str) -> None:
    """The worker consuming `queue` starts again under its hostname: a new run, alive, having
    marked what the old process held lost (as apps.serving.worker.worker does at start)."""
    workers.beat(redis_client(), f"{queue}@host", [queue], started=time.time())


def test_a_request_whose_worker_restarted_while_it_waited_ends_at_once_not_at_its_timeout(
    client_as: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue)
    ServingProfile.objects.create(version=placement.version, request_timeout_s=30)

    def send_then_restart(name: str, **_: Any) -> None:
        # The old process takes the request and is killed; its supervisor starts it again within a
        # second, long before the old one would count as silent.
        restarted(placement.device.queue)

    monkeypatch.setattr(dispatch, "send", send_then_restart)

    began = time.monotonic()
    response = ask(client_as(Role.OPERATOR), placement.version)

    assert time.monotonic() - began < 6  # a slice or two and the restarted run's grace, of 30 s
    assert response.status_code == 503
    assert "restarted while this request waited" in response.json()["detail"]
    assert response.headers["Retry-After"]


def test_a_request_still_queued_when_its_worker_restarted_gets_the_new_runs_answer(
    client_as: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue)

    def send_then_restart_and_answer(name: str, *, args: Any = (), **_: Any) -> None:
        # The request was still in the queue: the new run takes it and answers it.
        restarted(placement.device.queue)
        answer = json.dumps({"ok": True, "result": {"text": "!"}})
        threading.Timer(1.5, redis_client().rpush, args=(args[2], answer)).start()

    monkeypatch.setattr(dispatch, "send", send_then_restart_and_answer)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    ("loading_again", "then"),
    [(True, "it is being loaded there again; try again shortly"), (False, "load it again")],
)
def test_an_answer_from_a_restarted_worker_says_the_placement_was_lost_with_it(
    client_as: Client, monkeypatch: pytest.MonkeyPatch, loading_again: bool, then: str
) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue)

    def answer_not_resident(name: str, *, args: Any = (), **_: Any) -> None:
        # The new run marked the placement lost as it started, then took the request.
        Placement.objects.filter(pk=placement.pk).update(state=P.LOST)
        if loading_again:
            PlacementFactory(version=placement.version, device=placement.device, state=P.REQUESTED)
        answer = {"ok": False, "resident": False, "error_class": "device_lost", "error": "not held here"}
        redis_client().rpush(args[2], json.dumps(answer))

    monkeypatch.setattr(dispatch, "send", answer_not_resident)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    assert response.json()["detail"] == (
        f"{placement.version} was lost from {placement.device} when its worker restarted: {then}."
    )


def test_a_request_that_waited_for_its_slot_checks_its_worker_again_before_sending(
    client_as: Client, sent: list
) -> None:
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue)
    ServingProfile.objects.create(version=placement.version, max_concurrency=1)
    # Another web process's request holds the version's only slot, and the worker dies while this
    # one waits for it.
    slots = Bulkhead(redis_client(), f"version {placement.version.pk}", concurrency=1, queue=8)
    other = Holder(slots)
    other.start()
    assert other.got.wait(5)

    def die_then_let_go() -> None:
        # Timed from when this request is seen waiting in the bulkhead, not from the test's start:
        # on a busy machine the request may take a while to get there, and it re-checks its worker
        # only after a wait of a second or more.
        deadline = time.monotonic() + 30
        while slots.occupancy()[1] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.3)
        heard(placement.device.queue, ago_s=25)
        other.finish()

    threading.Thread(target=die_then_let_go, daemon=True).start()

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    assert response.json()["error"] == "worker_silent"
    assert [s for s in sent if s[0] == messages.PLACEMENT_INFER] == []
    assert Placement.objects.get(pk=placement.pk).state == P.LOST


def test_a_request_never_waits_past_its_own_timeout_while_its_worker_lives(
    client_as: Client, sent: list, settings: Any
) -> None:
    settings.MOC_WORKER_SILENT_AFTER_S = 60  # its one beat stays current throughout
    placement = loaded()
    heard(placement.device.queue)
    ServingProfile.objects.create(version=placement.version, request_timeout_s=1.5)

    began = time.monotonic()
    response = ask(client_as(Role.OPERATOR), placement.version)

    assert 1.5 <= time.monotonic() - began < 2.5
    assert response.status_code == 504
    assert Placement.objects.get(pk=placement.pk).state == P.LOADED


def test_requests_past_the_bound_waiting_on_one_queue_are_refused_at_once(
    client_as: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MOC_SERVING_WAITING_PER_QUEUE = 1
    placement = loaded(node=NodeFactory(name="node-b"), index=0)
    heard(placement.device.queue)
    refusals: list[inference.Refused] = []

    def send(name: str, *, args: Any = (), **_: Any) -> None:
        # While this request waits on the queue, another comes for the same device.
        try:
            inference.infer(version=placement.version, task="generate", data=ASK["input"])
        except inference.Refused as refused:
            refusals.append(refused)
        redis_client().rpush(args[2], json.dumps({"ok": True, "result": {"text": "!"}}))

    monkeypatch.setattr(dispatch, "send", send)
    client = client_as(Role.OPERATOR)

    first = ask(client, placement.version)

    assert first.status_code == 200
    (busy,) = refusals
    assert (busy.status, busy.error_class, busy.retry_after_s) == (503, "queue_busy", 1)
    assert "gpu.node-b.0" in busy.reason
    assert "MOC_SERVING_WAITING_PER_QUEUE" in busy.reason
    # Its place is given back: the next request waits on the queue again.
    assert ask(client, placement.version).status_code == 200
    assert len(refusals) == 2


@pytest.mark.django_db(transaction=True)  # requests in threads of their own, as under gunicorn
def test_requests_waiting_for_a_slot_count_against_the_process_bound_on_waiting_requests(
    client_as: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MOC_WORKER_SILENT_AFTER_S = 60  # the workers' one beat stays current throughout
    settings.MOC_SERVING_WAITING_PER_PROCESS = 2
    slow = loaded(node=NodeFactory(name="node-b"), index=0)
    other = loaded(node=NodeFactory(name="node-a"), index=0)
    heard(slow.device.queue)
    heard(other.device.queue)
    ServingProfile.objects.create(version=slow.version, max_concurrency=1)
    held, let_go = threading.Event(), threading.Event()

    def send(name: str, *, args: Any = (), **_: Any) -> None:
        if args[0] == slow.pk and not held.is_set():  # the first request for the slow device hangs
            held.set()
            let_go.wait(10)
        redis_client().rpush(args[2], json.dumps({"ok": True, "result": {"text": "!"}}))

    monkeypatch.setattr(dispatch, "send", send)
    statuses: list[str] = []

    def request() -> None:
        try:
            inference.infer(version=slow.version, task="generate", data=ASK["input"])
            statuses.append("ok")
        except inference.Refused as refused:
            statuses.append(refused.error_class)
        finally:
            connection.close()

    # One request waits on the slow device, a second for the version's one slot behind it.
    threads = [threading.Thread(target=request) for _ in range(2)]
    threads[0].start()
    assert held.wait(10)
    threads[1].start()
    slots = Bulkhead(redis_client(), f"version {slow.version.pk}", concurrency=1, queue=1)
    wait_until(lambda: slots.occupancy() == (1, 1), 10, "the second request to wait for a slot")
    client = client_as(Role.OPERATOR)

    busy = ask(client, other.version)

    let_go.set()
    for thread in threads:
        thread.join(10)
    assert busy.status_code == 503, busy.json()
    assert busy.json()["error"] == "queue_busy"
    assert "MOC_SERVING_WAITING_PER_PROCESS" in busy.json()["detail"]
    assert int(busy["Retry-After"]) == 1
    assert statuses == ["ok", "ok"]
    # Their places are given back.
    assert ask(client, other.version).status_code == 200


def test_a_version_whose_only_placement_was_on_an_offline_node_says_so(client_as: Client) -> None:
    last_heard = timezone.now() - timedelta(minutes=3)
    node = NodeFactory(name="node-b", state=NodeState.OFFLINE, last_heartbeat_at=last_heard)
    placement = PlacementFactory(version=lm(), device=DeviceFactory(node=node), state=P.LOST)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    detail = response.json()["detail"]
    assert f"its only placement was on node-b, offline since {shown(last_heard.timestamp())}" in detail
    assert "load it first" not in detail


def test_a_version_whose_placement_was_lost_says_how(client_as: Client) -> None:
    placement = PlacementFactory(
        version=lm(),
        device=DeviceFactory(node=NodeFactory(name="node-b"), index=0),
        state=P.LOST,
        error="Lost: node-b's worker for gpu.node-b.0 has been silent since 2026-01-05 12:03:04 (25 s).",
    )

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    assert (
        "its placement on node-b/gpu0 was lost (node-b's worker for gpu.node-b.0 has been silent since"
        in response.json()["detail"]
    )


def test_a_version_unloaded_by_an_operator_is_still_just_not_loaded(client_as: Client) -> None:
    placement = PlacementFactory(version=lm(), state=P.UNLOADED)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 409
    assert "load it first" in response.json()["detail"]


@pytest.fixture
def redis_that_stops(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop: the session's serves every other test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with override_settings(REDIS_URL=server.url):
            yield server
    finally:
        server.stop()


def test_inference_while_redis_is_down_is_a_503_saying_so_without_where_it_is(
    client_as: Client, redis_that_stops: RedisServer
) -> None:
    placement = loaded()
    client = client_as(Role.OPERATOR)
    redis_that_stops.stop()

    response = ask(client, placement.version)

    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "broker_unavailable"
    assert "MOC's Redis (REDIS_URL), which every request goes through, is unreachable" in body["detail"]
    assert "broker" not in body["detail"]
    assert str(redis_that_stops.port) not in body["detail"]
    assert int(response["Retry-After"]) >= 1
    assert Placement.objects.get(pk=placement.pk).state == P.LOADED


@pytest.fixture
def broker_down() -> Iterator[None]:
    """Celery's broker out of reach while the Redis of MOC's own state answers: a deployment whose
    CELERY_BROKER_URL is another Redis, which stopped. Producers are pooled per broker, so the
    pools go with the URL."""
    from moc_site.celery import app

    def repool() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    before = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    repool()
    yield
    app.conf.broker_url = before
    repool()


@pytest.mark.usefixtures("broker_down")
def test_inference_the_broker_cannot_take_is_a_503_that_does_not_count_against_the_placement(
    client_as: Client,
) -> None:
    placement = loaded()
    heard(placement.device.queue)

    response = ask(client_as(Role.OPERATOR), placement.version)

    assert response.status_code == 503
    assert response.json()["error"] == "broker_unavailable"
    detail = response.json()["detail"]
    assert "the broker (CELERY_BROKER_URL) is unreachable, so requests cannot reach the workers" in detail
    assert "127.0.0.1" not in detail
    assert "Connection refused" not in detail  # the client's words, with where, go to the log
    assert Breakers(redis_client()).get([placement.pk])[placement.pk].failures == 0
