"""A stand-in for a device worker's direct reader (apps.serving.worker.direct), for the data plane's
tests without a model: a thread that takes requests from one device queue's list and answers each
with the frames a worker would write (accepted, deltas when streamed, done), from a script the test
gives. Its run is the one the queue's heartbeat names, so the web side believes it alive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from apps.core.redis_clients import redis_client
from apps.serving.domain import wire
from tests.serving.test_inference_faults import heard

Frames = list[dict[str, Any]]
Script = Callable[[wire.Request], Frames]

FIGURES = {"queue_ms": 1.0, "compute_ms": 5.0, "ttft_ms": 2.0, "itl_ms": 1.5, "tokens_in": 3, "tokens_out": 2}


def answered(request: wire.Request) -> Frames:
    """What a healthy worker of the tiny LM answers: "hello" in two tokens, or an embedding."""
    if request.op == wire.Op.EMBED:
        vectors = [[0.5, -0.25] for _ in request.params["inputs"]]
        return [wire.done({"data": vectors, "usage": {"prompt_tokens": 3}, "dim": 2}, FIGURES)]
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    if not request.stream:
        choice = {"index": 0, "text": "hello", "finish_reason": "length", "tokens": None, "prompt": None}
        return [wire.done({"choices": [choice], "usage": usage}, FIGURES)]
    choice = {"index": 0, "text": "", "finish_reason": "length", "tokens": None, "prompt": None}
    return [
        wire.delta(0, "hel"),
        wire.delta(0, "lo", finish_reason="length"),
        wire.done({"choices": [choice], "usage": usage}, FIGURES),
    ]


class StandIn(threading.Thread):
    """Answers the requests on `queue` by `script` until stopped; `taken` holds what it took."""

    def __init__(self, queue: str, script: Script = answered) -> None:
        super().__init__(daemon=True)
        self.queue, self.script = queue, script
        self.taken: list[wire.Request] = []
        self.stopping = threading.Event()
        self.host = f"{queue}@host"  # as tests.serving.test_inference_faults.heard names it
        self.started_at = heard(queue) - 60

    def run(self) -> None:
        client = redis_client(timeout=5)
        while not self.stopping.is_set():
            got = client.blpop([wire.request_key(self.queue)], timeout=0.1)
            if got is None:
                continue
            request = wire.Request.decode(got[1])
            self.taken.append(request)
            key = wire.reply_key(request.id)
            client.rpush(key, wire.encode_frame(wire.accepted(self.host, self.started_at)))
            for frame in self.script(request):
                client.rpush(key, wire.encode_frame(frame))

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
