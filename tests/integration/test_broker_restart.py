"""Redis restarted under load: every worker reconnects and keeps consuming.

The broker is the session redis-server, stopped and started again on the same port with its
append-only file (as deploy/redis/redis.conf runs it), several times while a thread-pool device
worker and the prefork default worker are acking a steady stream of acks_late tasks.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.crashing_tasks import sleep
from tests.procs import RedisServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DEVICE_QUEUE = "gpu.restart.0"
RESTARTS = 4


def _feed(queues: list[str], stop: threading.Event) -> None:
    """Short acks_late tasks on every queue, all the time; a send during the outage may fail."""
    while not stop.is_set():
        for queue in queues:
            try:
                sleep.apply_async(args=[0.05], queue=queue, retry=False)
            except Exception:  # Redis is down right now: the next round sends again
                time.sleep(0.2)
        time.sleep(0.02)


def test_every_worker_survives_redis_restarting_under_load(start_worker, redis_server: RedisServer):
    # Four threads, as scripts/run.sh runs a device worker: the crash needs a free slot (a BRPOP in
    # flight) while a message is held unacked, which one thread never has.
    device = start_worker(queues=DEVICE_QUEUE, pool="threads", name="device", concurrency=4)
    default = start_worker(queues="default", name="cpu")
    queues = [DEVICE_QUEUE, "default"]
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(queues, stop), daemon=True)
    feeder.start()
    try:
        for _ in range(RESTARTS):
            time.sleep(1.5)  # tasks in flight, acks on their way
            redis_server.stop()
            time.sleep(1.0)
            redis_server.start()
    finally:
        stop.set()
        feeder.join(10)

    for proc in (device, default):
        assert proc.alive(), proc.output()[-4000:]
    for queue in queues:
        fresh = sleep.apply_async(args=[0], queue=queue)
        assert fresh.get(timeout=60) == 0, queue
    for proc in (device, default):
        assert "Unrecoverable error" not in proc.output(), proc.output()[-4000:]
    wait_until(lambda: all(p.alive() for p in (device, default)), 1, "the workers to be alive")
