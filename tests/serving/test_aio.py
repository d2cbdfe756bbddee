"""The data plane's request path (inference.aio over inference.direct) against the session's real
Redis. The device worker's side is played by writing frames on the reply list as the wire
contract (serving.domain.wire) says a worker does: the contract, not a mock of our code."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import time_machine
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings

from apps.core import workers
from apps.core.redis_clients import redis_client
from apps.serving.domain import wire
from apps.serving.domain.breaker import BreakerConfig, BreakerState
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PlacementState
from apps.serving.inference import Limits, Refused, aio
from apps.serving.inference.aio import Target
from apps.serving.models import Placement
from apps.serving.resilience import AsyncBulkhead, Breakers, Bulkhead
from apps.serving.runtimes import Loaded
from apps.serving.worker.direct import Reader
from apps.serving.worker.residents import RESIDENTS
from tests.procs import RedisServer, wait_until
from tests.serving.test_direct_reader import COMPLETE, lm  # noqa: F401 (lm: the demo LM, a fixture)
from tests.serving.test_inference_faults import SILENT_AFTER_S, heard, loaded
from tests.serving.test_resilience import Holder

# No broker here: what losing a placement sends (its version's load elsewhere) is recorded instead.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]
CFG = BreakerConfig(failure_threshold=2, open_s=30.0)
LIMITS = Limits(concurrency=2, queue=4, timeout_s=5.0, breaker=CFG)
PROMPT = {"prompts": ["Once upon a time"], "max_tokens": 3}
FIGURES = {"queue_ms": 1.0, "compute_ms": 2.0, "ttft_ms": 1.5, "itl_ms": 0.5, "tokens_in": 4, "tokens_out": 3}


@pytest.fixture(autouse=True)
def _silence_settles(settings: Any) -> None:
    """A worker silent for 4 s is dead; Redis must have been up that long for silence to count."""
    settings.MOC_WORKER_SILENT_AFTER_S = SILENT_AFTER_S
    wait_until(lambda: workers.heartbeats_settled(redis_client()), 10, "Redis to be up that long")


def run(go: Callable[[redis.asyncio.Redis], Awaitable[Any]]) -> Any:
    """Run `go` with an asyncio Redis client on an event loop, as the data plane does; the ORM
    calls it makes through sync_to_async run in this thread, inside the test's transaction."""

    async def main() -> Any:
        client = redis.asyncio.Redis.from_url(django_settings.REDIS_URL, socket_timeout=10)
        try:
            return await go(client)
        finally:
            await client.aclose()

    return async_to_sync(main)()


def alive(queue: str, hostname: str | None = None, started: float | None = None) -> tuple[str, float]:
    """A worker run consuming `queue`, alive now: its (hostname, started)."""
    hostname = hostname or f"{queue}@host"
    started = started if started is not None else time.time() - 60
    workers.beat(redis_client(), hostname, [queue], started)
    return hostname, started


class Worker(threading.Thread):
    """The worker's side of the wire for one request: takes it from the queue's list and writes
    `script(request)` on its reply list in order; a callable in the script is done at its turn
    instead (a restart, a pause), and an Event is waited for."""

    def __init__(self, queue: str, script: Callable[[wire.Request], list[Any]]) -> None:
        super().__init__(daemon=True)
        self.queue, self.script = queue, script
        self.request: wire.Request | None = None
        self.start()

    def run(self) -> None:
        client = redis_client(timeout=10)
        popped = client.blpop([wire.request_key(self.queue)], timeout=8)
        if popped is None:
            return
        self.request = wire.Request.decode(popped[1])
        for step in self.script(self.request):
            if isinstance(step, threading.Event):
                step.wait(10)
            elif callable(step):
                step()
            else:
                client.rpush(wire.reply_key(self.request.id), wire.encode_frame(step))


def target(placement: Placement) -> Target:
    return Target(placement_id=placement.pk, queue=placement.device.queue, device=str(placement.device))


async def collect(
    client: redis.asyncio.Redis,
    placement: Placement,
    *,
    stream: bool = False,
    limits: Limits = LIMITS,
    targets: list[Target] | None = None,
) -> list[dict[str, Any]]:
    frames = aio.stream(
        client=client,
        version_id=placement.version_id,
        version_label=str(placement.version),
        targets=targets or [target(placement)],
        op=wire.Op.COMPLETE,
        params=PROMPT,
        stream=stream,
        limits=limits,
        bulkhead=f"version {placement.version_id}",
    )
    return [frame async for frame in frames]


def refusal(placement: Placement, **kwargs: Any) -> Refused:
    with pytest.raises(Refused) as refused:
        run(lambda client: collect(client, placement, **kwargs))
    return refused.value


def occupancy(placement: Placement) -> tuple[int, int]:
    bulkhead = Bulkhead(redis_client(), f"version {placement.version_id}", concurrency=1, queue=0)
    return bulkhead.occupancy()


def left_behind() -> list[bytes]:
    """The direct channel's keys still in Redis: request lists and reply lists."""
    client = redis_client()
    return sorted(client.scan_iter(match=f"{wire.REQUEST_PREFIX}*")) + sorted(
        client.scan_iter(match=f"{wire.REPLY_PREFIX}*")
    )


def test_a_streamed_answer_comes_as_its_deltas_then_done_with_the_slot_wait() -> None:
    placement = loaded()
    run_ = alive(placement.device.queue)
    result = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": {}}
    worker = Worker(
        placement.device.queue,
        lambda r: [
            wire.accepted(*run_),
            wire.delta(0, " there"),
            wire.delta(0, " was"),
            wire.delta(0, " a", finish_reason="length"),
            wire.done(result, FIGURES),
        ],
    )

    frames = run(lambda client: collect(client, placement, stream=True))

    assert [(f["k"], f.get("text")) for f in frames] == [
        ("delta", " there"),
        ("delta", " was"),
        ("delta", " a"),
        ("done", None),
    ]
    assert frames[-1]["result"] == result
    assert frames[-1]["figures"] == {**FIGURES, "slot_wait_ms": pytest.approx(0, abs=200)}
    sent = worker.request
    assert sent is not None
    assert (sent.op, sent.placement_id, sent.version_id, sent.params, sent.stream) == (
        wire.Op.COMPLETE,
        placement.pk,
        placement.version_id,
        PROMPT,
        True,
    )
    assert 0 < sent.timeout_s <= LIMITS.timeout_s
    assert occupancy(placement) == (0, 0)
    assert left_behind() == []


def test_a_request_goes_to_the_target_whose_worker_is_alive_and_the_silent_ones_are_lost() -> None:
    version_of = loaded()
    silent_one = loaded(version_of.version, node__name="node-b")
    heard(silent_one.device.queue, ago_s=25)
    run_ = alive(version_of.device.queue)
    Worker(version_of.device.queue, lambda r: [wire.accepted(*run_), wire.done({}, FIGURES)])

    frames = run(lambda client: collect(client, version_of, targets=[target(silent_one), target(version_of)]))

    assert [f["k"] for f in frames] == ["done"]
    assert Placement.objects.get(pk=silent_one.pk).state == PlacementState.LOST


@pytest.mark.parametrize(
    ("error_class", "status"),
    [
        (ErrorClass.BAD_INPUT, 400),
        (ErrorClass.TIMEOUT, 504),
        (ErrorClass.OUT_OF_MEMORY, 503),
        (ErrorClass.DEVICE_LOST, 503),
        (ErrorClass.INTERNAL, 502),
    ],
)
def test_a_workers_error_frame_is_refused_by_its_class(error_class: ErrorClass, status: int) -> None:
    placement = loaded()
    run_ = alive(placement.device.queue)
    Worker(placement.device.queue, lambda r: [wire.accepted(*run_), wire.error(error_class, "it went wrong")])

    refused = refusal(placement)

    assert (refused.status, refused.error_class) == (status, error_class)
    assert "it went wrong" in refused.reason
    breaker = Breakers(redis_client()).get([placement.pk])[placement.pk]
    # The caller's bad input says nothing of the placement.
    assert breaker.failures == (0 if error_class == ErrorClass.BAD_INPUT else 1)
    assert occupancy(placement) == (0, 0)
    assert left_behind() == []


def test_an_answer_from_a_worker_that_no_longer_holds_the_model_loses_it_and_loads_it_again() -> None:
    placement = loaded()
    run_ = alive(placement.device.queue)
    Worker(
        placement.device.queue,
        lambda r: [wire.accepted(*run_), wire.error(ErrorClass.INTERNAL, "not resident", resident=False)],
    )

    refused = refusal(placement)

    assert refused.status == 503
    assert "lost by its worker" in refused.reason
    assert Placement.objects.get(pk=placement.pk).state == PlacementState.LOST


def test_a_request_whose_accepting_run_restarted_is_refused_within_a_slice() -> None:
    placement = loaded()
    queue = placement.device.queue
    hostname, started = alive(queue)

    def restart() -> None:
        redis_client().delete(f"{workers.KEY_PREFIX}{hostname}")
        alive(queue, hostname, started=time.time())

    Worker(queue, lambda r: [wire.accepted(hostname, started), wire.delta(0, " there"), restart])
    began = time.monotonic()

    refused = refusal(placement, stream=True)

    assert time.monotonic() - began < 3
    assert (refused.status, refused.error_class, refused.retry_after_s) == (503, ErrorClass.DEVICE_LOST, 5)
    assert "restarted" in refused.reason
    assert Breakers(redis_client()).get([placement.pk])[placement.pk].failures == 1
    assert left_behind() == []


def test_a_queued_request_waits_through_a_restart_for_the_new_run() -> None:
    placement = loaded()
    queue = placement.device.queue
    hostname, _ = alive(queue)
    later = time.time()
    # The old run never took it; the new one does, after the web side looked at least once.
    new_run = (hostname, later)

    def restart() -> None:
        alive(queue, hostname, started=later)

    worker = Worker(
        queue, lambda r: [restart, lambda: time.sleep(1.5), wire.accepted(*new_run), wire.done({}, FIGURES)]
    )

    frames = run(lambda client: collect(client, placement))

    assert worker.request is not None
    assert [f["k"] for f in frames] == ["done"]


def test_a_request_for_a_silent_worker_is_refused_before_it_is_sent_and_its_placement_lost() -> None:
    placement = loaded()
    heard(placement.device.queue, ago_s=25)

    refused = refusal(placement)

    assert (refused.status, refused.error_class) == (503, "worker_silent")
    assert (
        f"on {placement.device}: {placement.device.node.name}'s worker for {placement.device.queue}"
        in refused.reason
    )
    assert "has been silent since" in refused.reason
    assert Placement.objects.get(pk=placement.pk).state == PlacementState.LOST
    assert left_behind() == []
    assert occupancy(placement) == (0, 0)  # the slot its prelude took, given back


def test_a_silent_worker_is_said_before_a_full_bulkhead() -> None:
    placement = loaded()
    heard(placement.device.queue, ago_s=25)
    limits = Limits(concurrency=1, queue=0, timeout_s=5.0, breaker=CFG)
    other = Holder(Bulkhead(redis_client(), f"version {placement.version_id}", concurrency=1, queue=0))
    other.start()
    assert other.got.wait(5)
    try:
        refused = refusal(placement, limits=limits)
        holding = occupancy(placement)
    finally:
        other.finish()

    assert (refused.status, refused.error_class) == (503, "worker_silent")
    assert holding == (1, 0)  # the other request's slot, untouched


def test_a_request_that_waited_for_its_slot_reads_the_breakers_again() -> None:
    placement = loaded()
    alive(placement.device.queue)
    limits = Limits(concurrency=1, queue=4, timeout_s=5.0, breaker=CFG)
    other = Holder(Bulkhead(redis_client(), f"version {placement.version_id}", concurrency=1, queue=4))
    other.start()
    assert other.got.wait(5)

    def fail_then_let_go() -> None:  # while the request waits, its placement's breaker opens
        breakers = Breakers(redis_client())
        for _ in range(CFG.failure_threshold):
            breakers.record(placement.pk, CFG, now=time.time(), error_class=ErrorClass.TIMEOUT, error="x")
        other.finish()

    threading.Timer(0.5, fail_then_let_go).start()

    refused = refusal(placement, limits=limits)

    assert (refused.status, refused.error_class) == (503, "breaker_open")
    assert refused.waited_s >= 0.4
    assert occupancy(placement) == (0, 0)
    assert left_behind() == []


def test_a_worker_that_dies_while_a_request_waits_ends_the_wait_as_worker_silent() -> None:
    placement = loaded()
    queue = placement.device.queue
    hostname, started = alive(queue)

    def die() -> None:  # its TTL key expired, its last beat long ago
        with time_machine.travel(time.time() - 25, tick=False):
            workers.beat(redis_client(), hostname, [queue], started)
        redis_client().delete(f"{workers.KEY_PREFIX}{hostname}")

    Worker(queue, lambda r: [wire.accepted(hostname, started), die])
    began = time.monotonic()

    refused = refusal(placement)

    assert time.monotonic() - began < 3
    assert (refused.status, refused.error_class) == (503, "worker_silent")
    assert Placement.objects.get(pk=placement.pk).state == PlacementState.LOST
    assert left_behind() == []


def test_no_answer_in_time_is_a_504_that_takes_the_request_back_from_the_queue() -> None:
    placement = loaded()
    alive(placement.device.queue)  # alive, but nothing reads its list
    limits = Limits(concurrency=2, queue=4, timeout_s=1.5, breaker=CFG)
    began = time.monotonic()

    refused = refusal(placement, limits=limits)

    assert 1.5 <= time.monotonic() - began < 3
    assert (refused.status, refused.error_class) == (504, ErrorClass.TIMEOUT)
    assert Breakers(redis_client()).get([placement.pk])[placement.pk].failures == 1
    assert occupancy(placement) == (0, 0)
    assert left_behind() == []


def test_a_full_bulkhead_is_a_429_with_retry_after_shared_with_the_sync_path() -> None:
    placement = loaded()
    alive(placement.device.queue)
    limits = Limits(concurrency=1, queue=0, timeout_s=5.0, breaker=CFG)
    # A sync request (another web process) holds the only slot.
    other = Holder(Bulkhead(redis_client(), f"version {placement.version_id}", concurrency=1, queue=0))
    other.start()
    assert other.got.wait(5)
    try:
        refused = refusal(placement, limits=limits)
    finally:
        other.finish()

    assert (refused.status, refused.error_class) == (429, "bulkhead_full")
    assert refused.retry_after_s is not None
    assert refused.retry_after_s >= 1
    assert "1 request running and 0 waiting" in refused.reason
    assert left_behind() == []


def test_an_open_breaker_is_a_503_without_sending() -> None:
    placement = loaded()
    alive(placement.device.queue)
    breakers = Breakers(redis_client())
    for _ in range(CFG.failure_threshold):
        breakers.record(placement.pk, CFG, now=time.time(), error_class=ErrorClass.TIMEOUT, error="no answer")

    refused = refusal(placement)

    assert (refused.status, refused.error_class) == (503, "breaker_open")
    assert refused.retry_after_s is not None
    assert 25 <= refused.retry_after_s <= 30
    assert "circuit open" in refused.reason
    assert occupancy(placement) == (0, 0)
    assert left_behind() == []


def test_async_failures_open_the_breaker_the_sync_path_reads() -> None:
    placement = loaded()
    run_ = alive(placement.device.queue)
    for _ in range(CFG.failure_threshold):
        Worker(
            placement.device.queue, lambda r: [wire.accepted(*run_), wire.error(ErrorClass.INTERNAL, "boom")]
        )
        refusal(placement)

    breaker = Breakers(redis_client()).get([placement.pk])[placement.pk]

    assert breaker.state == BreakerState.OPEN
    assert breaker.last_error == "internal: boom"


def test_a_cancelled_request_gives_its_slot_back_and_leaves_no_reply_list() -> None:
    placement = loaded()
    run_ = alive(placement.device.queue)
    let_go = threading.Event()
    worker = Worker(placement.device.queue, lambda r: [wire.accepted(*run_), wire.delta(0, " there"), let_go])

    async def go(client: redis.asyncio.Redis) -> tuple[dict, tuple[int, int]]:
        frames = aio.stream(
            client=client,
            version_id=placement.version_id,
            version_label=str(placement.version),
            targets=[target(placement)],
            op=wire.Op.COMPLETE,
            params=PROMPT,
            stream=True,
            limits=LIMITS,
            bulkhead=f"version {placement.version_id}",
        )
        first = await anext(frames)
        holding = await asyncio.to_thread(occupancy, placement)
        waiting = asyncio.ensure_future(anext(frames))
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return first, holding

    first, holding = run(go)
    let_go.set()
    worker.join(5)

    assert first["text"] == " there"
    assert holding == (1, 0)
    assert occupancy(placement) == (0, 0)
    assert left_behind() == []
    # The worker running it is told to stop: its cancel key, which it reads as it pushes a frame.
    assert [k.decode() for k in redis_client().scan_iter(match="moc:dx:*")] != []
    # The caller going away says nothing of the placement.
    assert Breakers(redis_client()).get([placement.pk])[placement.pk].failures == 0


@pytest.mark.parametrize("stream", [True, False])
def test_redis_lost_after_the_done_frame_leaves_the_answer_whole_and_says_so(
    stream: bool, settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The epilogue (the breaker's record, the slot's give-back) fails on a Redis killed between
    the done frame and it: the answer is whole all the same, and the failure logged."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    settings.REDIS_URL = server.url
    try:
        placement = loaded()
        run_ = alive(placement.device.queue)
        result = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": {}}
        Worker(
            placement.device.queue,
            lambda r: [
                wire.accepted(*run_),
                *([wire.delta(0, " hi")] if r.stream else []),
                wire.done(result, FIGURES),
            ],
        )

        async def go(client: redis.asyncio.Redis) -> list[dict[str, Any]]:
            frames = aio.stream(
                client=client,
                version_id=placement.version_id,
                version_label=str(placement.version),
                targets=[target(placement)],
                op=wire.Op.COMPLETE,
                params=PROMPT,
                stream=stream,
                limits=LIMITS,
                bulkhead=f"version {placement.version_id}",
            )
            if not stream:  # as the data plane takes a non-streamed answer: its done frame, then aclose()
                done = await anext(frames)
                server.stop()
                await frames.aclose()
                return [done]
            got = []
            async for frame in frames:
                got.append(frame)
                if frame["k"] == wire.Kind.DONE.value:
                    server.stop()
            return got

        with caplog.at_level(logging.WARNING, logger="apps.serving.inference.aio"):
            frames = run(go)
    finally:
        server.stop()

    assert [f["k"] for f in frames] == (["delta", "done"] if stream else ["done"])
    assert frames[-1]["result"] == result
    assert "its success and slot were not recorded" in caplog.text


def test_a_request_cancelled_before_a_worker_took_it_is_taken_back_from_the_queue() -> None:
    placement = loaded()
    alive(placement.device.queue)  # alive, but busy: nothing reads its list yet

    async def go(client: redis.asyncio.Redis) -> list[bytes]:
        waiting = asyncio.ensure_future(collect(client, placement))
        await asyncio.sleep(0.3)
        queued = await client.lrange(wire.request_key(placement.device.queue), 0, -1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return queued

    queued = run(go)

    assert len(queued) == 1
    assert left_behind() == []
    assert occupancy(placement) == (0, 0)


def test_redis_out_of_reach_is_a_503_saying_so(settings: Any) -> None:
    placement = loaded()

    async def go(_: redis.asyncio.Redis) -> Any:
        nowhere = redis.asyncio.Redis(port=1, socket_connect_timeout=0.5)
        try:
            return await collect(nowhere, placement)
        finally:
            await nowhere.aclose()

    with pytest.raises(Refused) as refused:
        run(go)

    assert (refused.value.status, refused.value.error_class) == (503, "broker_unavailable")
    assert "MOC's Redis (REDIS_URL)" in refused.value.reason
    assert refused.value.retry_after_s == 5


def test_noop_measures_the_channels_own_round_trip() -> None:
    placement = loaded()
    run_ = alive(placement.device.queue)
    worker = Worker(placement.device.queue, lambda r: [wire.accepted(*run_), wire.done({}, FIGURES)])

    seconds = run(lambda client: aio.noop(client=client, target=target(placement), timeout_s=5))

    assert 0 < seconds < 1
    assert worker.request is not None
    assert worker.request.op == wire.Op.NOOP
    assert left_behind() == []


def test_the_async_liveness_reads_match_the_sync_ones() -> None:
    live_queue, silent_queue, stopped_queue = "gpu.a.0", "gpu.b.0", "gpu.c.0"
    alive(live_queue)
    heard(silent_queue, ago_s=25)
    heard(stopped_queue, stopped=True)
    queues = [live_queue, silent_queue, stopped_queue, "gpu.never.0"]

    async def go(client: redis.asyncio.Redis) -> tuple[dict, dict]:
        beats = await workers.aqueues_heard(queues, client)
        return beats, {q: await workers.asilence_in(q, h, client) for q, h in beats.items()}

    beats, silences = run(go)

    assert beats == workers.queues_heard(queues, redis_client())
    assert silences == workers.queues_silence(queues, redis_client())
    assert [q for q, s in silences.items() if s is not None] == [silent_queue, stopped_queue]


@pytest.fixture
def reading(lm: Loaded, settings: Any) -> Iterator[tuple[Placement, Loaded]]:  # noqa: F811 (the fixture)
    """A device worker's real direct reader on a placement's queue, its run alive, the demo LM
    held as the placement's resident model."""
    settings.MOC_DEVICE_THREADS = 2
    placement = loaded()
    hostname, started = alive(placement.device.queue)
    RESIDENTS.add(placement.pk, lm)
    reader = Reader()
    reader.start(placement.device.queue, hostname, started)
    yield placement, lm
    reader.stop(grace_s=10)
    RESIDENTS.remove(placement.pk, drain_s=0)


def test_the_real_reader_answers_through_the_async_path_streamed_and_not(
    reading: tuple[Placement, Loaded],
) -> None:
    placement, model = reading
    params = {**COMPLETE, "max_tokens": 6}
    expected = model.complete(**params, deadline=None)

    async def go(client: redis.asyncio.Redis) -> tuple[list[dict], list[dict], float]:
        def ask(stream: bool) -> AsyncIterator[dict]:
            return aio.stream(
                client=client,
                version_id=placement.version_id,
                version_label=str(placement.version),
                targets=[target(placement)],
                op=wire.Op.COMPLETE,
                params=params,
                stream=stream,
                limits=LIMITS,
                bulkhead=f"version {placement.version_id}",
            )

        whole = [f async for f in ask(False)]
        streamed = [f async for f in ask(True)]
        return whole, streamed, await aio.noop(client=client, target=target(placement), timeout_s=5)

    whole, streamed, noop_s = run(go)

    assert [f["k"] for f in whole] == ["done"]
    assert whole[0]["result"]["choices"][0]["text"] == expected["choices"][0]["text"]
    assert whole[0]["figures"]["tokens_out"] == 6
    assert "slot_wait_ms" in whole[0]["figures"]
    assert {f["k"] for f in streamed[:-1]} == {"delta"}
    assert streamed[-1]["k"] == "done"
    assert "".join(f["text"] for f in streamed[:-1]) == expected["choices"][0]["text"]
    assert 0 < noop_s < 1
    assert occupancy(placement) == (0, 0)
    assert left_behind() == []


def test_a_non_streamed_request_costs_at_most_four_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    placement = loaded()
    run_ = alive(placement.device.queue)
    sent: list[bytes] = []
    send = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command if isinstance(command, bytes) else b"".join(command))
        await send(self, command, check_health)

    async def twice(client: redis.asyncio.Redis) -> int:
        await collect(client, placement)  # the first loads the scripts into the server
        Worker(placement.device.queue, lambda r: [wire.accepted(*run_), wire.done({}, FIGURES)])
        monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", counted)
        await collect(client, placement)
        return len(sent)

    Worker(placement.device.queue, lambda r: [wire.accepted(*run_), wire.done({}, FIGURES)])

    round_trips = run(twice)

    # The prelude (the workers, the slot, the breakers), send + the first frames, [the done frame],
    # the epilogue (the breaker's record, the slot's release).
    assert 3 <= round_trips <= 4, sent


def test_an_async_waiter_takes_the_slot_a_sync_request_gives_back() -> None:
    name = "version 77"
    holder = Holder(Bulkhead(redis_client(), name, concurrency=1, queue=4))
    holder.start()
    assert holder.got.wait(5)
    threading.Timer(0.5, holder.finish).start()

    async def go(client: redis.asyncio.Redis) -> tuple[float, tuple[int, int]]:
        async with AsyncBulkhead(client, name, concurrency=1, queue=4).slot(wait_s=5, lease_s=30) as waited:
            return waited, await asyncio.to_thread(
                Bulkhead(redis_client(), name, concurrency=1, queue=4).occupancy
            )

    waited, inside = run(go)

    assert 0.4 <= waited < 2
    assert inside == (1, 0)
    assert Bulkhead(redis_client(), name, concurrency=1, queue=4).occupancy() == (0, 0)


def test_a_request_whose_worker_said_goodbye_waits_for_the_answer_it_finishes() -> None:
    placement = loaded()
    queue = placement.device.queue
    hostname, started = alive(queue)

    def goodbye() -> None:
        workers.beat(redis_client(), hostname, [queue], started, stopped=True)

    Worker(
        queue,
        lambda r: [
            wire.accepted(hostname, started),
            goodbye,
            lambda: time.sleep(1.5),
            wire.done({}, FIGURES),
        ],
    )

    frames = run(lambda client: collect(client, placement))

    assert [f["k"] for f in frames] == ["done"]
    assert Placement.objects.get(pk=placement.pk).state == PlacementState.LOADED
