"""SIGTERM stops a worker within MOC_WORKER_SOFT_SHUTDOWN_S, with either pool.

Celery takes SIGTERM for a warm shutdown, which waits for the running tasks however long they
take (its own soft-shutdown window applies to cold shutdowns only). So a SIGTERM starts a timer
of the window here. A warm shutdown takes no new task, so its heartbeat says goodbye as it starts
(workers.goodbye): requests are not sent to it during the window, and a wait already sent to it
is its caller's to keep. A worker that is idle, or whose tasks end inside the window, stops as
Celery stops it, the timer never firing. When it fires with tasks still running, the worker
gives them up: their deliveries are marked INTERRUPTED (so the redelivery is not counted as a
crash); every message it holds unacked (running, prefetched, or waiting for its ETA) goes back
to the head of its queue for another worker; its worker_shutdown hooks run, for at most
HOOKS_S (the heartbeat's goodbye, the fleet agent's lock, the serving recorder, the outbox
drainer); its pool's child processes are killed; and it exits. Celery's own cold shutdown cannot
do this for a thread pool (which cannot cancel a running task), and it cancels the tasks before
telling anyone, so nothing could mark them interrupted first.

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
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from celery.worker import state as worker_state
from django.conf import settings

from apps.core import workers
from apps.core.delivery import deliveries_interrupt

log = logging.getLogger(__name__)

HOOKS_S = 5.0  # the most the worker_shutdown hooks may take once the window is over

_consumer: Any = None  # the worker's consumer, once ready: its hostname, app and queues


@worker_ready.connect(dispatch_uid="moc-shutdown-consumer")
def _remember_consumer(sender: Any, **kwargs: Any) -> None:
    global _consumer
    _consumer = sender


@worker_shutting_down.connect(dispatch_uid="moc-shutdown-window")
def _start_window(sender: str, sig: str = "", how: str = "", exitcode: int = 0, **kwargs: Any) -> None:
    """Runs in the signal handler: only starts threads."""
    if how != "Warm":
        return
    if _consumer is not None:  # it takes nothing new from now: say so now, not when it exits
        threading.Thread(target=workers.goodbye, args=(_consumer,), name="moc-goodbye", daemon=True).start()
    if sig != "SIGTERM":
        return
    window = settings.CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT
    timer = threading.Timer(window, give_up_running_tasks, args=(window, exitcode))
    timer.name, timer.daemon = "moc-shutdown-window", True
    timer.start()


def give_up_running_tasks(window: float, exitcode: int) -> None:
    """The window is over: hand back what still runs and exit; nothing to do if nothing runs."""
    running = list(worker_state.active_requests)
    if not running:
        return
    log.warning(
        "SIGTERM: %d task(s) still running after the %g s shutdown window, handed back to the "
        "broker for another worker, with every message it took and did not start: %s",
        len(running),
        window,
        ", ".join(f"{request.name} [{request.id}]" for request in running),
    )
    deliveries_interrupt(task_ids=[request.id for request in running])
    if _consumer is not None:
        _hand_back_held(_consumer)
        _run_shutdown_hooks(_consumer.controller)
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    os._exit(exitcode)


def _hand_back_held(consumer: Any) -> None:
    """Put every message the worker's task channel holds unacked back at the head of its queue,
    as kombu does when the channel closes (which os._exit skips): a running task's, and one taken
    but not started, prefetched or waiting for its ETA, which would otherwise stay in Redis's
    unacked set until the visibility timeout (hours)."""
    try:
        consumer.task_consumer.channel.qos.restore_unacked_once()
    except Exception as exc:  # Redis is gone: the visibility timeout brings them back
        log.warning("could not hand back the messages this worker holds: %s", exc)


def _run_shutdown_hooks(controller: Any) -> None:
    """What Celery sends as the worker stops (worker_shutdown), for at most HOOKS_S: os._exit would
    skip it. A receiver that raises is logged by the signal; one still running is left behind."""
    hooks = threading.Thread(
        target=worker_shutdown.send, kwargs={"sender": controller}, name="moc-shutdown-hooks", daemon=True
    )
    hooks.start()
    hooks.join(HOOKS_S)
    if hooks.is_alive():
        log.warning("worker_shutdown hooks still running after %g s; exiting without them", HOOKS_S)
