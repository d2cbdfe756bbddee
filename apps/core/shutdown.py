"""SIGTERM stops a worker within MOC_WORKER_SOFT_SHUTDOWN_S, with either pool.

Celery takes SIGTERM for a warm shutdown, which waits for the running tasks however long they
take (its own soft-shutdown window applies to cold shutdowns only). So a SIGTERM starts a timer
of the window here. A worker that is idle, or whose tasks end inside the window, stops as Celery
stops it, the timer never firing. When it fires with tasks still running, the worker gives them
up: their deliveries are marked INTERRUPTED (so the redelivery is not counted as a crash), their
messages go back to the head of their queues for another worker, its heartbeat says goodbye, its
pool's child processes are killed, and it exits. Celery's own cold shutdown cannot do this for a
thread pool (which cannot cancel a running task), and it cancels the tasks before telling
anyone, so nothing could mark them interrupted first.

A task given up so is run again from its start by the next worker: it must be safe to rerun,
as every MOC task is (acks_late already makes it so after a crash).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

import psutil
from celery.signals import worker_ready, worker_shutting_down
from celery.worker import state as worker_state
from django.conf import settings

from apps.core import broker, workers
from apps.core.delivery import deliveries_interrupt

log = logging.getLogger(__name__)

_consumer: Any = None  # the worker's consumer, once ready: its hostname, app and queues


@worker_ready.connect(dispatch_uid="moc-shutdown-consumer")
def _remember_consumer(sender: Any, **kwargs: Any) -> None:
    global _consumer
    _consumer = sender


@worker_shutting_down.connect(dispatch_uid="moc-shutdown-window")
def _start_window(sender: str, sig: str = "", how: str = "", exitcode: int = 0, **kwargs: Any) -> None:
    """Runs in the signal handler: only starts the timer."""
    if sig != "SIGTERM" or how != "Warm":
        return
    window = settings.CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT
    timer = threading.Timer(window, give_up_running_tasks, args=(window, exitcode))
    timer.name, timer.daemon = "moc-shutdown-window", True
    timer.start()


def give_up_running_tasks(window: float, exitcode: int) -> None:
    """The window is over: hand back what still runs and exit; nothing to do if nothing runs."""
    requests = list(worker_state.active_requests)
    if not requests:
        return
    log.warning(
        "SIGTERM: %d task(s) still running after the %g s shutdown window, handed back to the "
        "broker for another worker: %s",
        len(requests),
        window,
        ", ".join(f"{request.name} [{request.id}]" for request in requests),
    )
    try:
        deliveries_interrupt(task_ids=[request.id for request in requests])
    except Exception as exc:  # the database is gone too: the redelivery will count as lost
        log.warning("could not mark %d running task(s) as interrupted: %s", len(requests), exc)
    for request in requests:
        try:
            broker.hand_back(request.message)
        except Exception as exc:  # Redis is gone: the visibility timeout brings the message back
            log.warning("could not hand back task %s [%s]: %s", request.name, request.id, exc)
    if _consumer is not None:
        workers.goodbye(_consumer)
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    os._exit(exitcode)
