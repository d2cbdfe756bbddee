"""Worker liveness: each Celery worker reports it is alive to Redis every MOC_WORKER_HEARTBEAT_S.

Two records per worker. A key with a TTL (`moc:worker:<hostname>`), which /readyz and the fleet
pages count: a worker that dies simply lets it expire. And, per queue it consumes, the last beat
heard (`moc:queue-workers:<queue>`, a hash of hostname -> beat, no TTL), which outlives the worker:
that is how a request for a device knows, before it is sent, that nothing consumes the device's
queue any more and since when (`queue_silence`), instead of waiting out its timeout. Redis rather
than the database because this is a short-lived fact, written often.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from celery.worker import state
from django.conf import settings

from apps.core import metrics
from apps.core.delivery import deliveries_interrupt
from apps.core.redis_clients import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "moc:worker:"
QUEUE_PREFIX = "moc:queue-workers:"
_stop = threading.Event()


def _key(hostname: str) -> str:
    return f"{KEY_PREFIX}{hostname}"


def _queue_key(queue: str) -> str:
    return f"{QUEUE_PREFIX}{queue}"


def beat(
    client: redis.Redis, hostname: str, queues: list[str], started: float, *, stopped: bool = False
) -> None:
    """Say that `hostname` is alive (or, with `stopped`, that it shut down cleanly just now)."""
    info = {
        "hostname": hostname,
        "queues": queues,
        "pid": os.getpid(),
        "started": started,
        "seen": time.time(),
        "stopped": stopped,
    }
    encoded = json.dumps(info)
    with client.pipeline(transaction=False) as pipe:
        if stopped:
            pipe.delete(_key(hostname))
        else:
            pipe.set(_key(hostname), encoded, ex=settings.MOC_WORKER_SILENT_AFTER_S)
        for queue in queues:
            pipe.hset(_queue_key(queue), hostname, encoded)
        pipe.execute()


def live_workers(client: redis.Redis | None = None) -> list[dict[str, Any]]:
    client = client or redis_client()
    keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=500))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


def live_queues(client: redis.Redis | None = None) -> set[str]:
    """Every queue at least one live worker consumes."""
    return {queue for worker in live_workers(client) for queue in worker.get("queues", [])}


@dataclass(frozen=True, slots=True)
class Heard:
    """The last beat heard from one worker of a queue."""

    hostname: str
    pid: int
    started: float
    seen: float
    stopped: bool  # it said goodbye: a clean shutdown, not a crash


def queue_heard(queue: str, client: redis.Redis | None = None) -> list[Heard]:
    """The last beat of every worker that ever consumed `queue`, latest first."""
    client = client or redis_client()
    heard = []
    for raw in client.hvals(_queue_key(queue)):
        info = json.loads(raw)
        heard.append(
            Heard(
                hostname=str(info["hostname"]),
                pid=int(info.get("pid") or 0),
                started=float(info.get("started") or 0.0),
                seen=float(info["seen"]),
                stopped=bool(info.get("stopped")),
            )
        )
    return sorted(heard, key=lambda h: h.seen, reverse=True)


@dataclass(frozen=True, slots=True)
class Silence:
    """Nothing consumes a queue: its last worker, and whether it stopped cleanly or went quiet."""

    queue: str
    last: Heard

    @property
    def since(self) -> float:
        """When it was last heard from."""
        return self.last.seen


def queue_silence(
    queue: str, *, now: float | None = None, client: redis.Redis | None = None
) -> Silence | None:
    """Why no live worker consumes `queue`, or None while one does, or while that is not known.

    Not known: no worker of the queue was ever heard of (a Redis that lost its data, a queue no
    worker has consumed yet), or Redis itself has been up for less than MOC_WORKER_SILENT_AFTER_S,
    so the workers have not had the time to beat again since it restarted (its append-only file
    brings their old beats back). Only a worker that was heard of and then went silent counts."""
    client = client or redis_client()
    now = time.time() if now is None else now
    heard = queue_heard(queue, client)
    if not heard:
        return None
    limit = settings.MOC_WORKER_SILENT_AFTER_S
    if any(not h.stopped and now - h.seen <= limit for h in heard):
        return None
    # The rare path, so the extra round trip is paid only here.
    if int(client.info("server").get("uptime_in_seconds", 0)) <= limit:
        return None
    return Silence(queue=queue, last=heard[0])


def _loop(hostname: str, queues: list[str], started: float) -> None:
    client = redis_client()
    while not _stop.is_set():
        try:
            beat(client, hostname, queues, started)
        except redis.RedisError as exc:
            log.warning("worker heartbeat to Redis failed: %s", exc)
        _stop.wait(settings.MOC_WORKER_HEARTBEAT_S)


def _consumed(sender: Any) -> list[str]:
    return sorted(q.name for q in sender.app.amqp.queues.consume_from.values())


@dataclass
class _Run:
    started: float
    thread: threading.Thread


_runs: dict[str, _Run] = {}


@worker_ready.connect(dispatch_uid="moc-worker-heartbeat-start")
def _start_heartbeat(sender: Any, **kwargs: Any) -> None:
    hostname, queues, started = sender.hostname, _consumed(sender), time.time()
    _stop.clear()
    thread = threading.Thread(
        target=_loop, args=(hostname, queues, started), name="moc-heartbeat", daemon=True
    )
    _runs[hostname] = _Run(started=started, thread=thread)
    thread.start()
    try:
        metrics.serve_worker_metrics(settings.MOC_WORKER_METRICS_PORT, settings.PROMETHEUS_MULTIPROC_DIR)
    except OSError as exc:  # a port taken by another worker of this machine: run without
        log.warning("worker metrics not served on port %s: %s", settings.MOC_WORKER_METRICS_PORT, exc)


@worker_shutdown.connect(dispatch_uid="moc-worker-heartbeat-stop")
def _stop_heartbeat(sender: Any, **kwargs: Any) -> None:
    """The last beat says goodbye, so nothing takes this clean stop for a crash."""
    _stop.set()
    run = _runs.pop(sender.hostname, None)
    if run is None:
        return
    run.thread.join(timeout=2)  # its beat in flight must not land after the goodbye
    with contextlib.suppress(redis.RedisError):
        beat(redis_client(), sender.hostname, _consumed(sender), run.started, stopped=True)


@worker_shutting_down.connect(dispatch_uid="moc-deliveries-interrupt")
def _interrupt_active_tasks(sender: Any, **kwargs: Any) -> None:
    """A warm shutdown hands unfinished tasks back to the broker: not a crash, so say so first."""
    task_ids = [request.id for request in list(state.active_requests)]
    if task_ids:
        try:
            deliveries_interrupt(task_ids=task_ids)
        except Exception as exc:  # the database is gone too: the redelivery will count as lost
            log.warning("could not mark %d running tasks as interrupted: %s", len(task_ids), exc)
