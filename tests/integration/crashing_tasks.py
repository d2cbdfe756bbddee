"""Tasks that exist only for integration tests; workers load them with `-I`."""

import os

from celery import shared_task

from apps.core.delivery import DurableTask


@shared_task(base=DurableTask, name="tests.kill_own_worker")
def kill_own_worker() -> None:
    """Dies the way a segfaulting CUDA kernel or an OOM kill would: without cleanup."""
    os._exit(137)


@shared_task(base=DurableTask, name="tests.sleep")
def sleep(seconds: float) -> float:
    """Long enough work to be caught by a worker's shutdown."""
    import time

    time.sleep(seconds)
    return seconds
