"""A device worker's serving life: at start, what the old process held is marked lost (and what
had been serving a while is loaded again), the recorder, the orphan sweep and the direct
channel's reader start and preloads are requested; at stop, they end."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import datetime
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from apps.core import workers
from apps.core.domain.queues import device_queue, node_device_queues
from apps.fleet.models import Device
from apps.serving import placing
from apps.serving.domain.states import PLACEMENT_ON_WORKER, PlacementState
from apps.serving.models import Placement
from apps.serving.worker.device import device_id, set_device_id
from apps.serving.worker.direct import READER
from apps.serving.worker.loading import free_orphans
from apps.serving.worker.records import RECORDER

log = logging.getLogger(__name__)
P = PlacementState


_ORPHAN_SWEEP_S = 30.0


_sweeping = threading.Event()


def _sweep_orphans() -> None:
    while not _sweeping.wait(_ORPHAN_SWEEP_S):
        try:
            free_orphans()
        except Exception:
            log.exception("could not look for orphaned models; trying again")
            close_old_connections()


def worker_started(queues: list[str], hostname: str | None = None) -> None:
    """A device worker starts: what its device held before is gone with the old process (LOST),
    the recorder starts, the direct reader starts reading for the run `hostname` (none without
    one), and the versions marked for preloading are requested."""
    if device_id() is not None:
        return
    mine = node_device_queues(queues, settings.MOC_NODE_NAME)
    if not mine:
        return
    kind, node, index = mine[0]
    device = Device.objects.select_related("node").filter(node__name=node, kind=kind, index=index).first()
    if device is None:
        log.debug("device %s.%s.%s is not registered yet", kind, node, index)
        return
    # The direct reader's accepted frames name the run its heartbeats carry: wait for that run.
    started = workers.run_started(hostname) if hostname else None
    if hostname and started is None:
        log.debug("worker %s has not started its heartbeat yet", hostname)
        return
    _limit_cpu_threads()
    now = timezone.now()
    for p in Placement.objects.filter(device=device, state__in=PLACEMENT_ON_WORKER):
        # Its load message waits (retrying) until this start sets the device id below.
        placing.placement_lost(
            p,
            error="Lost: its worker restarted, and what the old process held went with it.",
            reload=placing.Reload.SAME_DEVICE if served_before_restart(p, now) else placing.Reload.NO,
        )
    RECORDER.start()
    _sweeping.clear()
    threading.Thread(target=_sweep_orphans, name="moc-serving-orphans", daemon=True).start()
    # Only now may loads run here: none of them can be taken for what the old process held.
    set_device_id(device.pk)
    if hostname and started is not None:
        READER.start(device_queue(kind, node, index), hostname, started)
    placing.preload(device=device)


# What had served this long when its worker died is loaded again once the worker is back. What was
# loading, or had only just loaded, is not: it may be what killed the worker, and loading it again
# would make a crash loop of the restart. The preload below asks for what is marked to be resident.
RELOAD_SERVED_S = 60.0


def served_before_restart(placement: Placement, now: datetime) -> bool:
    """Whether `placement`, found on this device as its worker starts, had been serving long enough
    to be loaded again."""
    return (
        placement.state == P.LOADED
        and placement.loaded_at is not None
        and (now - placement.loaded_at).total_seconds() >= RELOAD_SERVED_S
    )


def _limit_cpu_threads() -> None:
    """Each request already has its own worker thread: torch's and onnxruntime's own pools of CPU
    threads on top only fight over the cores (the runtimes' tests saw 5 ms a token with torch's
    default on two cores, 0.5 ms with one thread). Set before torch is imported where possible."""
    threads = str(settings.MOC_TORCH_THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ.setdefault("MKL_NUM_THREADS", threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(settings.MOC_TORCH_THREADS)


def worker_stopping() -> None:
    _sweeping.set()
    READER.stop()  # before the recorder: what it still answers is recorded
    RECORDER.stop()


# Wired to Celery's worker signals (connected when the serving app is ready). The agent registers
# the device in its own thread as the worker starts, so serving waits for the row to exist.


_REGISTRATION_WAIT_S = 120.0


@worker_ready.connect(dispatch_uid="moc-serving-start")
def _on_worker_ready(sender: Any, **kwargs: Any) -> None:
    queues = [q.name for q in sender.app.amqp.queues.consume_from.values()]
    if not node_device_queues(queues, settings.MOC_NODE_NAME):
        return
    hostname = sender.hostname

    def start() -> None:
        deadline = time.monotonic() + _REGISTRATION_WAIT_S
        while True:
            try:
                worker_started(queues, hostname)
            except Exception:
                log.exception("serving could not start; trying again")
            else:
                if device_id() is not None:
                    return
                if time.monotonic() > deadline:
                    log.warning("this worker's device is still not registered: it serves no placements")
                    return
            time.sleep(0.5)
            close_old_connections()

    threading.Thread(target=start, name="moc-serving-start", daemon=True).start()


@worker_shutdown.connect(dispatch_uid="moc-serving-stop")
def _on_worker_shutdown(sender: Any, **kwargs: Any) -> None:
    worker_stopping()
