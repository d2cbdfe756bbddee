"""The device worker's direct reader against a real redis-server: requests taken off the device's
list are answered in frames (accepted, deltas, done or error) on their reply lists, by the demo LM
held as a resident model, or by a gated model where a test must hold a request running."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from apps.core.redis_clients import redis_client
from apps.models import demo
from apps.serving.domain import wire
from apps.serving.runtimes import Loaded, LoadSpec, decode, load
from apps.serving.worker import answering
from apps.serving.worker.direct import Reader, Reply
from apps.serving.worker.records import Line, Recorder
from apps.serving.worker.residents import RESIDENTS
from tests.serving.doubles import COMPLETE, TextOnly
from tests.serving.factories import PlacementFactory

QUEUE = "cpu.reader-test.0"
HOST, STARTED = "worker@reader-test", 1_700_000_000.5
LM, GATED = 9001, 9002


class Gated(TextOnly):
    """A model whose every generation waits for `gate`, counting the generations it began."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.began = 0

    def _generate(self, *, prompt: str, **_: Any) -> dict[str, Any]:
        self.began += 1
        assert self.gate.wait(10), "the test never opened the gate"
        return {"text": prompt.upper(), "tokens_in": 1, "tokens_out": 1, "finish_reason": "length"}


class Heard(Recorder):
    """The worker's real recorder, keeping a copy of each line it is given to read back."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[Line] = []

    def add(self, line: Line) -> None:
        self.lines.append(line)
        super().add(line)

    def wait(self, wait_s: float = 15.0) -> list[Line]:
        deadline = time.monotonic() + wait_s
        while not self.lines:
            assert time.monotonic() < deadline, f"nothing recorded in {wait_s} s"
            time.sleep(0.02)
        return self.lines


@pytest.fixture(scope="module")
def lm(demo_models: Path) -> Iterator[Loaded]:
    loaded = load(LoadSpec(path=str(demo_models / demo.BASE), format="hf", kind="causal-lm", device="cpu"))
    yield loaded
    loaded.close()


@pytest.fixture
def gated() -> Gated:
    return Gated()


@pytest.fixture
def reader(lm: Loaded, gated: Gated, settings: Any) -> Iterator[Reader]:
    settings.MOC_DEVICE_THREADS = 2
    RESIDENTS.add(LM, lm)
    RESIDENTS.add(GATED, gated)
    started = Reader()
    started.start(QUEUE, HOST, STARTED)
    yield started
    gated.gate.set()
    started.stop(grace_s=10)
    for pk in (LM, GATED):
        RESIDENTS.remove(pk, drain_s=0)


def send(
    placement_id: int = LM,
    op: wire.Op = wire.Op.COMPLETE,
    *,
    params: dict[str, Any] | None = None,
    **fields: Any,
) -> wire.Request:
    request = wire.Request(
        **{
            "id": uuid.uuid4().hex,
            "op": op,
            "placement_id": placement_id,
            "version_id": 1,
            "params": COMPLETE if params is None else params,
            "timeout_s": 20.0,
            "sent_at": time.time(),
        }
        | fields
    )
    redis_client().rpush(wire.request_key(QUEUE), request.encode())
    return request


def frames(
    request: wire.Request, *, until: set[str] | None = None, wait_s: float = 15.0
) -> list[dict[str, Any]]:
    """The request's frames, read as the web side reads them, up to its last (done or error)."""
    until = until or {"done", "error"}
    client, got = redis_client(timeout=wait_s + 2), []
    deadline = time.monotonic() + wait_s
    while not got or got[-1]["k"] not in until:
        left = deadline - time.monotonic()
        assert left > 0, f"no final frame in {wait_s} s; got {got}"
        popped = client.blpop([wire.reply_key(request.id)], timeout=max(0.1, left))
        if popped is not None:
            got.append(wire.decode_frame(popped[1]))
    return got


def test_a_request_is_answered_with_accepted_then_done(reader: Reader, lm: Loaded) -> None:
    request = send()
    key = wire.reply_key(request.id)
    deadline = time.monotonic() + 15
    while redis_client().llen(key) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    ttl = redis_client().ttl(key)

    got = frames(request)

    assert [f["k"] for f in got] == ["accepted", "done"]
    assert (got[0]["host"], got[0]["started"]) == (HOST, STARTED)
    done = got[1]
    assert done["result"] == lm.complete(**COMPLETE, deadline=None)
    assert set(done["figures"]) == set(wire.FIGURES)
    assert (done["figures"]["tokens_out"], done["figures"]["ttft_ms"] > 0) == (8, True)
    assert 20 <= ttl <= 20 + wire.REPLY_TTL_GRACE_S  # Redis drops it unread after the request's time


def test_a_streamed_request_sends_its_deltas_before_done(reader: Reader, lm: Loaded) -> None:
    expected = lm.complete(**COMPLETE, deadline=None)["choices"][0]["text"]

    got = frames(send(stream=True))

    kinds = [f["k"] for f in got]
    assert (kinds[0], kinds[-1]) == ("accepted", "done")
    deltas = got[1:-1]
    assert len(deltas) > 2
    assert {f["k"] for f in deltas} == {"delta"}
    assert "".join(f["text"] for f in deltas) == expected
    assert deltas[-1]["finish_reason"] == "length"
    assert got[-1]["result"]["choices"][0]["text"] == ""  # it went as deltas


def test_a_chat_and_an_embedding_are_answered_in_their_result_shapes(reader: Reader) -> None:
    chat = {k: v for k, v in COMPLETE.items() if k not in ("prompts", "echo")}
    chat["messages"] = [{"role": "user", "content": "hello"}]

    chatted = frames(send(op=wire.Op.CHAT, params=chat))[-1]
    embedded = frames(send(op=wire.Op.EMBED, params={"inputs": ["a worker", [5, 6]], "dimensions": 8}))[-1]

    assert (chatted["k"], chatted["result"]["usage"]["completion_tokens"]) == ("done", 8)
    assert embedded["k"] == "done"
    assert (embedded["result"]["dim"], [len(v) for v in embedded["result"]["data"]]) == (8, [8, 8])


def test_a_stale_request_gets_a_timeout_without_running(reader: Reader, gated: Gated) -> None:
    request = send(GATED, sent_at=time.time() - 30, timeout_s=5.0)

    got = frames(request)

    assert [f["k"] for f in got] == ["accepted", "error"]
    assert got[1]["error_class"] == "timeout"
    assert "past its 5.0 s" in got[1]["error"]
    assert gated.began == 0


def test_noop_is_done_at_once_without_a_model(reader: Reader) -> None:
    got = frames(send(0, wire.Op.NOOP, params={}))

    assert [f["k"] for f in got] == ["accepted", "done"]
    assert got[1]["result"] == {}


def test_a_request_for_a_model_not_held_here_says_it_is_not_resident(reader: Reader) -> None:
    got = frames(send(424242))

    assert got[-1]["k"] == "error"
    assert (got[-1]["error_class"], got[-1]["resident"]) == ("device_lost", False)


def test_a_bad_parameter_is_answered_with_bad_input_naming_it(reader: Reader) -> None:
    got = frames(send(params={**COMPLETE, "top_p": 0}))
    missing = frames(send(params={k: v for k, v in COMPLETE.items() if k != "max_tokens"}))

    assert (got[-1]["error_class"], "top_p" in got[-1]["error"]) == ("bad_input", True)
    assert missing[-1]["error"] == "max_tokens is missing from the request"


def test_a_malformed_message_is_dropped_and_the_next_request_still_answered(reader: Reader) -> None:
    redis_client().rpush(wire.request_key(QUEUE), b"{not json", b'{"id": "x"}')

    got = frames(send())

    assert got[-1]["k"] == "done"
    assert redis_client().llen(wire.request_key(QUEUE)) == 0


def test_the_reader_takes_no_more_requests_than_it_has_threads(reader: Reader, gated: Gated) -> None:
    requests = [send(GATED) for _ in range(3)]
    for request in requests[:2]:
        frames(request, until={"accepted"})

    time.sleep(1.5)  # more than a BLPOP's wait: a third taken now would have been taken already
    assert redis_client().llen(wire.request_key(QUEUE)) == 1
    gated.gate.set()

    assert [frames(r, until={"done"})[-1]["result"]["choices"][0]["text"] for r in requests[2:]] == [
        "THE REGISTRY"
    ]


def test_stop_lets_the_running_request_finish(reader: Reader, gated: Gated) -> None:
    request = send(GATED)
    frames(request, until={"accepted"})
    stopping = threading.Thread(target=reader.stop, kwargs={"grace_s": 10})

    stopping.start()
    time.sleep(0.5)
    assert stopping.is_alive()  # waiting for the request
    gated.gate.set()
    stopping.join(10)

    assert not stopping.is_alive()
    assert frames(request, until={"done"})[-1]["result"]["choices"][0]["text"] == "THE REGISTRY"


def test_stop_takes_no_more_requests(reader: Reader) -> None:
    reader.stop(grace_s=1)

    send()
    time.sleep(1.5)

    assert redis_client().llen(wire.request_key(QUEUE)) == 1  # it waits for the next run


@pytest.mark.django_db
def test_a_direct_answer_is_recorded_with_its_token_timings(
    lm: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.serving.models import InferenceRecord

    recorder = Recorder()
    monkeypatch.setattr(answering, "RECORDER", recorder)
    placement = PlacementFactory()
    RESIDENTS.add(placement.pk, lm)
    emitted: list[dict[str, Any]] = []
    request = wire.Request(
        id="r1",
        op=wire.Op.COMPLETE,
        placement_id=placement.pk,
        version_id=placement.version_id,
        params=COMPLETE,
        timeout_s=20.0,
        sent_at=time.time() - 0.25,
        waited_ms=100.0,
    )
    try:
        answering.answer_direct(request, emitted.append)
    finally:
        RESIDENTS.remove(placement.pk, drain_s=0)

    assert recorder.flush() == 1
    record = InferenceRecord.objects.get()
    figures = emitted[-1]["figures"]
    assert (record.task, record.outcome, record.tokens_out) == ("generate", "ok", 8)
    assert record.ttft_ms == pytest.approx(figures["ttft_ms"])
    assert record.itl_ms == pytest.approx(figures["itl_ms"])
    assert 0 < record.itl_ms < record.ttft_ms + figures["compute_ms"]
    assert figures["queue_ms"] >= 350  # 250 ms on the list and 100 ms for the web's slot


# A long answer: 8 choices of 100 tokens, hundreds of frames when streamed.
LONG = COMPLETE | {"max_tokens": 100, "n": 8}


def cancel(request: wire.Request) -> int:
    """Do what the web side does when the caller goes away: set the request's cancel key. Returns
    how many frames the worker had written by then (read in the same transaction)."""
    with redis_client().pipeline(transaction=True) as pipe:
        pipe.set(wire.cancel_key(request.id), 1, ex=60)
        pipe.llen(wire.reply_key(request.id))
        return int(pipe.execute()[1])


def written(request: wire.Request) -> list[dict[str, Any]]:
    return [wire.decode_frame(raw) for raw in redis_client().lrange(wire.reply_key(request.id), 0, -1)]


def test_a_stream_whose_caller_went_away_stops_within_a_frame_and_is_recorded_cancelled(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Heard()
    monkeypatch.setattr(answering, "RECORDER", recorder)
    request = send(params=LONG, stream=True)
    client = redis_client()
    deadline = time.monotonic() + 15
    while client.llen(wire.reply_key(request.id)) < 3:  # accepted and two deltas
        assert time.monotonic() < deadline, "no deltas in 15 s"
        time.sleep(0.005)

    before = cancel(request)
    [line] = recorder.wait()
    time.sleep(0.3)
    got = written(request)

    assert (line.outcome, line.task) == ("cancelled", "generate")
    assert len(got) - before <= 1  # at most the frame on its way as the key was set
    assert {f["k"] for f in got[1:]} == {"delta"}  # no done, no error: nobody reads them
    assert len(got) < 100  # of the 800 tokens' frames


def test_a_request_not_streamed_hears_it_was_cancelled_and_sends_nothing_more(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Heard()
    monkeypatch.setattr(answering, "RECORDER", recorder)
    request = send(params=LONG)
    frames(request, until={"accepted"})

    cancel(request)
    [line] = recorder.wait()
    time.sleep(0.3)

    assert line.outcome == "cancelled"
    assert written(request) == []  # the accepted frame was read above; nothing came after it


def test_a_request_cancelled_before_it_ran_does_not_run(
    reader: Reader, gated: Gated, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Heard()
    monkeypatch.setattr(answering, "RECORDER", recorder)
    request = wire.Request(
        id=uuid.uuid4().hex,
        op=wire.Op.COMPLETE,
        placement_id=GATED,
        version_id=1,
        params=COMPLETE,
        timeout_s=20.0,
        sent_at=time.time(),
    )
    cancel(request)  # the caller went away while a worker was taking it
    redis_client().rpush(wire.request_key(QUEUE), request.encode())

    [line] = recorder.wait()

    assert (line.outcome, gated.began) == ("cancelled", 0)
    assert [f["k"] for f in written(request)] == ["accepted"]


def test_a_frame_that_cannot_be_written_as_json_is_answered_with_an_internal_error() -> None:
    request = send(GATED)  # never taken: no reader runs here
    reply = Reply(redis_client(), request)
    nan = wire.Token(text="x", id=5, logprob=float("nan"))

    reply.emit(wire.delta(0, "x", tokens=[nan]))
    reply.emit(wire.done({}, {}))

    [error] = written(request)
    assert (error["k"], error["error_class"]) == ("error", "internal")
    assert "could not encode a delta frame" in error["error"]
    assert reply.cancelled()  # what it was answering stops: its caller has its answer


def test_a_masked_or_overflowed_logprob_is_floored_where_tokens_are_scored() -> None:
    row = torch.tensor([0.0, float("-inf"), float("nan")])

    masked, top = decode.scores(row, 1, 3)
    overflowed, _ = decode.scores(row, 2, 0)

    assert (masked, overflowed) == (-9999.0, -9999.0)
    assert sorted(top) == [(0, 0.0), (1, -9999.0), (2, -9999.0)]
    assert wire.encode_frame(wire.delta(0, "x", tokens=[wire.Token("x", 1, masked, [("y", top[-1][1])])]))
