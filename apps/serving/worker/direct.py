"""The device worker's end of the direct channel (apps.serving.domain.wire): a reader thread that
takes requests off its device queue's request list and answers them in a pool of threads.

The reader takes a request only when a thread of its pool is free, so what this worker cannot
start yet waits in Redis, where a restarted worker still finds it, never in this process's
memory. Each request it takes is acknowledged at once with an `accepted` frame naming this run
(hostname, start): a web side that then sees this run die refuses the request instead of
waiting out its time. A request that waited in the list past its time limit is answered with a
timeout error without running: its caller has given up on it.
"""

from __future__ import annotations

import logging
import math
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
        def emit(frame: dict[str, Any]) -> None:
            _push(client, request, frame)

        emit(wire.accepted(host, started))
        assert self._pool is not None
        future = self._pool.submit(self._answer, request, emit, taken)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._finished)

    def _answer(self, request: wire.Request, emit: Any, taken: float) -> None:
        try:
            close_old_connections()
            waited = taken - request.sent_at
            if waited > request.timeout_s:
                why = f"the request waited {waited:.1f} s for this worker, past its {request.timeout_s:.1f} s"
                emit(wire.error(ErrorClass.TIMEOUT.value, why))
            else:
                answer_direct(request, emit)
        except Exception:  # answer_direct answers its own failures; this is the reader's own
            log.exception("direct request %s failed unanswered", request.id)
            emit(wire.error(ErrorClass.INTERNAL.value, "the worker failed while answering"))
        finally:
            close_old_connections()

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._running.discard(future)
        if self._free is not None:
            self._free.release()


def _push(client: redis.Redis, request: wire.Request, frame: dict[str, Any]) -> None:
    """Add a frame to the request's reply list, which Redis drops a while after its time is up."""
    key = wire.reply_key(request.id)
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, wire.encode_frame(frame))
            pipe.expire(key, math.ceil(request.timeout_s) + wire.REPLY_TTL_GRACE_S)
            pipe.execute()
    except (redis.RedisError, ValueError) as exc:
        log.warning("could not hand a %s frame back on %s: %s", frame.get("k"), key, exc)


READER = Reader()
