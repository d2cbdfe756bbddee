"""The hop to a device worker over the direct channel (apps.serving.domain.wire), for the
asynchronous side: RPUSH the request on its queue's list, then BLPOP its frames from its reply
list, in slices of at most a second so that between them the wait can look at the worker.

The first round trip sends the request and waits for its first frames in one pipeline
(RPUSH, BLPOP, LPOP of up to _DRAIN more), so an answer that comes within the slice costs one
round trip, and a fast stream's tokens come several to a round trip.

Between slices, with nothing to read: nothing accepted yet and a live worker on the queue, it is
queued, and the wait goes on; no live worker (silent, not stopped) is WorkerSilent; the run that
accepted it replaced by a new run is a 503 (the request went with the old process); the run that
accepted it stopped cleanly finishes it within its shutdown window, so the wait goes on. Past
the deadline, a 504. A wait that ends without the last frame (a refusal, a timeout, the caller
gone: a cancelled task) takes the request back from the queue if no worker took it yet and drops
its reply list, so nothing is left behind but frames a worker writes later, which expire with
the list's TTL (wire.REPLY_TTL_GRACE_S).

The client's socket timeout must outlast a slice (10 s, as shared_redis()'s, does).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio

from apps.core.workers import Heard, alive_runs, aqueues_heard, asilence_in
from apps.serving.domain import wire
from apps.serving.inference.handoff import restarted
from apps.serving.inference.liveness import WorkerSilent
from apps.serving.inference.refusals import Refused, timed_out

# BLPOP waits at most this long per call; between calls the wait checks the queue's worker.
WAIT_SLICE_S = 1.0
# Frames taken at once after the one BLPOP waited for.
_DRAIN = 256
_LAST = frozenset({wire.Kind.DONE.value, wire.Kind.ERROR.value})

Run = tuple[str, float]  # (hostname, started): one run of a worker, as its heartbeats name it


async def exchange(
    client: redis.asyncio.Redis,
    request: wire.Request,
    *,
    queue: str,
    version: str,
    device: str,
    timeout_s: float,
) -> AsyncGenerator[dict[str, Any], None]:
    """Send `request` to `queue`'s worker and yield its frames after `accepted`: deltas, then the
    done or error frame, which ends it. `version` and `device` name them in refusals, and
    `timeout_s` is the request's whole time limit as its 504 states it; the wait itself ends
    `request.timeout_s` from now. Raises WorkerSilent, or Refused (restarted: 503; past its time:
    504; a frame out of order: 502)."""
    key = wire.reply_key(request.id)
    encoded = request.encode()
    deadline = time.monotonic() + request.timeout_s
    accepted: Run | None = None
    sent = False
    ended = False
    try:
        while (left := deadline - time.monotonic()) > 0:
            send, sent = None if sent else (queue, encoded), True  # on its way: taken back if need be
            frames = await _wait(client, key, min(left, WAIT_SLICE_S), send=send)
            if not frames:
                await _look(client, queue, accepted, version=version, device=device)
                continue
            for frame in frames:
                if frame["k"] == wire.Kind.ACCEPTED.value:
                    accepted = (str(frame["host"]), float(frame["started"]))
                    continue
                # A request dropped as stale gets its error with no acceptance.
                if accepted is None and frame["k"] != wire.Kind.ERROR.value:
                    raise Refused(
                        502, f"The worker of {device} answered out of order: {frame['k']} before accepted."
                    )
                ended = frame["k"] in _LAST
                yield frame
                if ended:
                    return
        raise timed_out(version, timeout_s)
    finally:
        if not ended and sent:
            await asyncio.shield(_take_back(client, queue, encoded, request))


async def _wait(
    client: redis.asyncio.Redis, key: str, slice_s: float, *, send: tuple[str, str] | None
) -> list[dict[str, Any]]:
    """The frames that came within `slice_s` (none: an empty list); `send` the request first, in
    the same round trip."""
    async with client.pipeline(transaction=False) as pipe:
        if send is not None:
            pipe.rpush(wire.request_key(send[0]), send[1])
        pipe.blpop([key], timeout=max(0.01, slice_s))
        pipe.lpop(key, _DRAIN)
        replies = await pipe.execute()
    first, more = replies[-2], replies[-1]
    raw = ([first[1]] if first else []) + (more or [])
    return [wire.decode_frame(r) for r in raw]


async def _look(
    client: redis.asyncio.Redis, queue: str, accepted: Run | None, *, version: str, device: str
) -> None:
    """Between slices: raise when the request can no longer be answered (module docstring)."""
    heard = (await aqueues_heard([queue], client))[queue]
    if accepted is not None:
        fate = _fate(accepted, heard)
        if fate == "working":
            return
        # Gone, and another run (a restart, or another worker of the queue) alive instead: the
        # request went with the run that took it.
        if fate == "restarted" or alive_runs(heard):
            raise restarted(device, version)
    elif alive_runs(heard):  # queued: a live run takes it in its turn
        return
    silence = await asilence_in(queue, heard, client)
    if silence is not None and not silence.last.stopped:
        raise WorkerSilent(silence)


def _fate(accepted: Run, heard: list[Heard]) -> str:
    """What became of the run that accepted a request: "working" (alive, or stopping cleanly,
    which finishes what it holds; or not heard of), "restarted" (a new run under its hostname),
    "dead" (silent: its TTL key expired)."""
    hostname, started = accepted
    run = next((h for h in heard if h.hostname == hostname), None)
    if run is None:
        return "working"
    if run.started != started:
        return "restarted"
    return "working" if run.alive or run.stopped else "dead"


async def _take_back(client: redis.asyncio.Redis, queue: str, encoded: str, request: wire.Request) -> None:
    """Take an unanswered request off its queue (if no worker took it yet), drop its frames, and
    tell a worker already running it to stop (its cancel key, which the worker reads in the round
    trip of each frame it pushes). With Redis out of reach, the refusal already under way says so;
    the keys expire on their own."""
    with contextlib.suppress(redis.RedisError):
        async with client.pipeline(transaction=False) as pipe:
            pipe.lrem(wire.request_key(queue), 1, encoded)
            pipe.delete(wire.reply_key(request.id))
            pipe.set(wire.cancel_key(request.id), 1, ex=wire.reply_ttl_s(request.timeout_s))
            await pipe.execute()
