"""Worker liveness: each Celery worker keeps a key with a TTL in Redis while it runs.

/readyz and the fleet pages count the live keys; a worker that dies simply lets its key
expire. Redis rather than the database because this is a short-lived fact, written often.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
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
_stop = threading.Event()


def _key(hostname: str) -> str:
    return f"{KEY_PREFIX}{hostname}"


def beat(client: redis.Redis, hostname: str, queues: list[str], started: float) -> None:
    ttl = settings.MOC_WORKER_HEARTBEAT_S * 3
    info = {
        "hostname": hostname,
        "queues": queues,
        "pid": os.getpid(),
        "started": started,
        "seen": time.time(),
    }
    client.set(_key(hostname), json.dumps(info), ex=ttl)


def live_workers(client: redis.Redis | None = None) -> list[dict[str, Any]]:
    client = client or redis_client()
    keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=500))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


def live_queues(client: redis.Redis | None = None) -> set[str]:
    """Every queue at least one live worker consumes."""
    return {queue for worker in live_workers(client) for queue in worker.get("queues", [])}


def _loop(hostname: str, queues: list[str]) -> None:
    client = redis_client()
    started = time.time()
    while not _stop.is_set():
        try:
            beat(client, hostname, queues, started)
        except redis.RedisError as exc:
            log.warning("worker heartbeat to Redis failed: %s", exc)
        _stop.wait(settings.MOC_WORKER_HEARTBEAT_S)


@worker_ready.connect(dispatch_uid="moc-worker-heartbeat-start")
def _start_heartbeat(sender: Any, **kwargs: Any) -> None:
    hostname = sender.hostname
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    _stop.clear()
    threading.Thread(target=_loop, args=(hostname, queues), name="moc-heartbeat", daemon=True).start()
    try:
        metrics.serve_worker_metrics(settings.MOC_WORKER_METRICS_PORT, settings.PROMETHEUS_MULTIPROC_DIR)
    except OSError as exc:  # a port taken by another worker of this machine: run without
        log.warning("worker metrics not served on port %s: %s", settings.MOC_WORKER_METRICS_PORT, exc)


@worker_shutdown.connect(dispatch_uid="moc-worker-heartbeat-stop")
def _stop_heartbeat(sender: Any, **kwargs: Any) -> None:
    _stop.set()
    with contextlib.suppress(redis.RedisError):
        redis_client().delete(_key(sender.hostname))


@worker_shutting_down.connect(dispatch_uid="moc-deliveries-interrupt")
def _interrupt_active_tasks(sender: Any, **kwargs: Any) -> None:
    """A warm shutdown hands unfinished tasks back to the broker: not a crash, so say so first."""
    task_ids = [request.id for request in list(state.active_requests)]
    if task_ids:
        try:
            deliveries_interrupt(task_ids=task_ids)
        except Exception as exc:  # the database is gone too: the redelivery will count as lost
            log.warning("could not mark %d running tasks as interrupted: %s", len(task_ids), exc)
