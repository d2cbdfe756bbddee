"""The device worker's end of the direct channel (apps.serving.domain.wire): a reader thread that
takes requests off its device queue's request list and answers them in a pool of threads.

The reader takes a request only when a thread of its pool is free, so what this worker cannot
start yet waits in Redis, where a restarted worker still finds it, never in this process's
memory. Each request it takes is acknowledged at once with an `accepted` frame naming this run
(hostname, start): a web side that then sees this run die refuses the request instead of
waiting out its time. A request that waited in the list past its time limit is answered with a
timeout error without running: its caller has given up on it.

A request whose caller went away (wire.cancel_key set by the web side) is stopped: each frame's
push asks for that key in the same round trip, and a request that sends no deltas asks now and
then on its own (`Reply.cancelled`); answer_direct then ends it without another frame.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections

from apps.core.redis_clients import redis_client
from apps.serving.domain import wire
from apps.serving.domain.errors import ErrorClass
from apps.serving.worker.answering import answer_direct

log = logging.getLogger(__name__)

# A BLPOP waits at most this long, so a stop is heard within about a second.
TAKE_S = 1.0
# What stop() gives the requests still running to finish.
STOP_GRACE_S = 30.0
# A pause after Redis failed, so a Redis that is down is not asked hundreds of times a second.
_RETRY_S = 1.0
# A request that pushes no frames asks whether it was cancelled after this many checks (tokens),
# or this long, whichever comes first.
ASK_EVERY, ASK_EVERY_S = 16, 0.25
_LAST = frozenset({wire.Kind.DONE.value, wire.Kind.ERROR.value})


class Reader:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._free: threading.Semaphore | None = None
        self._running: set[Future[None]] = set()
        self._lock = threading.Lock()

    def start(self, queue: str, host: str, started: float) -> None:
        """Read `queue`'s request list for the run (`host`, `started`); a second start is ignored."""
        if self._thread is not None and self._thread.is_alive():
            return
        threads = settings.MOC_DEVICE_THREADS
        self._stop.clear()
        self._free = threading.Semaphore(threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="moc-direct")
        # Its own pool of connections: a BLPOP holds its connection for up to TAKE_S.
        client = redis_client(timeout=TAKE_S + 4.0)
        self._thread = threading.Thread(
            target=self._read, args=(client, queue, host, started), name="moc-direct-reader", daemon=True
        )
        self._thread.start()
        log.info("reading direct requests on %s with %d threads", wire.request_key(queue), threads)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Take no more requests, and give those running up to `grace_s` to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TAKE_S + 5.0)
            self._thread = None
        with self._lock:
            running = set(self._running)
        if running:
            _, late = wait_for(running, timeout=grace_s)
            if late:
                log.warning("%d direct requests were still running when the worker stopped", len(late))
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _read(self, client: redis.Redis, queue: str, host: str, started: float) -> None:
        key = wire.request_key(queue)
        free = self._free
        assert free is not None
        while not self._stop.is_set():
            if not free.acquire(timeout=TAKE_S):
                continue  # every thread is busy: the requests wait in Redis
            try:
                taken = client.blpop([key], timeout=TAKE_S)
            except redis.RedisError as exc:
                free.release()
                log.warning("could not read direct requests on %s: %s", key, exc)
                self._stop.wait(_RETRY_S)
                continue
            if taken is None:
                free.release()
                continue
            try:
                request = wire.Request.decode(taken[1])
            except ValueError as exc:  # it names no reply list, so nobody can be told
                free.release()
                log.warning("dropped a message on %s that is not a direct request: %s", key, exc)
                continue
            self._submit(client, request, host, started, time.time())

    def _submit(
        self, client: redis.Redis, request: wire.Request, host: str, started: float, taken: float
    ) -> None:
        reply = Reply(client, request)
        reply.emit(wire.accepted(host, started))
        assert self._pool is not None
        future = self._pool.submit(self._answer, request, reply, taken)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._finished)

    def _answer(self, request: wire.Request, reply: Reply, taken: float) -> None:
        try:
            close_old_connections()
            waited = taken - request.sent_at
            if waited > request.timeout_s:
                why = f"the request waited {waited:.1f} s for this worker, past its {request.timeout_s:.1f} s"
                reply.emit(wire.error(ErrorClass.TIMEOUT.value, why))
            else:
                answer_direct(request, reply.emit, cancelled=reply.cancelled)
        except Exception:  # answer_direct answers its own failures; this is the reader's own
            log.exception("direct request %s failed unanswered", request.id)
            reply.emit(wire.error(ErrorClass.INTERNAL.value, "the worker failed while answering"))
        finally:
            close_old_connections()

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._running.discard(future)
        if self._free is not None:
            self._free.release()


class Reply:
    """One request's reply list, and whether its caller is still there to read it.

    Used by the one thread answering the request (after the reader's `accepted`). Once the caller
    went away, or a last frame (done, error) went, nothing more is written.
    """

    def __init__(self, client: redis.Redis, request: wire.Request) -> None:
        self._client = client
        self._request = request
        self._key = wire.reply_key(request.id)
        self._cancel = wire.cancel_key(request.id)
        self.gone = False  # the caller went away (or a frame could not be written and was refused)
        self._ended = False  # a last frame went
        self._checks = 0  # cancelled() calls since Redis was last asked
        self._asked = time.monotonic()

    def emit(self, frame: dict[str, Any]) -> None:
        """Add a frame to the reply list, which Redis drops a while after its time is up, and hear
        in the same round trip whether the caller went away. A frame that cannot be written as JSON
        goes as an internal error instead, which ends the request."""
        if self.gone or self._ended:
            return
        try:
            encoded = wire.encode_frame(frame)
        except ValueError as exc:
            log.warning("request %s: could not encode a %s frame: %s", self._request.id, frame.get("k"), exc)
            why = f"the worker could not encode a {frame.get('k')} frame of the answer: {exc}"
            encoded, self.gone = wire.encode_frame(wire.error(ErrorClass.INTERNAL.value, why)), True
        self._ended = self._ended or frame.get("k") in _LAST
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.rpush(self._key, encoded)
                pipe.expire(self._key, wire.reply_ttl_s(self._request.timeout_s))
                pipe.exists(self._cancel)
                cancelled = pipe.execute()[-1]
        except redis.RedisError as exc:
            log.warning("could not hand a %s frame back on %s: %s", frame.get("k"), self._key, exc)
            return
        self._heard(bool(cancelled))

    def cancelled(self) -> bool:
        """Whether the request should stop: its caller went away. Called per token; Redis is asked
        only every ASK_EVERY calls or ASK_EVERY_S since the last frame or question."""
        if self.gone:
            return True
        self._checks += 1
        if self._checks >= ASK_EVERY or time.monotonic() - self._asked >= ASK_EVERY_S:
            try:
                self._heard(bool(self._client.exists(self._cancel)))
            except redis.RedisError as exc:  # the next frame or question may hear it
                log.warning("could not ask whether request %s was cancelled: %s", self._request.id, exc)
        return self.gone

    def _heard(self, cancelled: bool) -> None:
        self.gone = self.gone or cancelled
        self._checks, self._asked = 0, time.monotonic()


READER = Reader()
