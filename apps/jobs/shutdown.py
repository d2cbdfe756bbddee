"""Whether this worker process is shutting down (Celery's warm shutdown, on SIGTERM).

A long runner looks at it after each step: a fine-tune writes a checkpoint and yields, so the job
resumes elsewhere (or here, after the restart) from that step instead of losing the run.
"""

from __future__ import annotations

import threading
from typing import Any

from celery.signals import worker_shutting_down

_requested = threading.Event()


def requested() -> bool:
    return _requested.is_set()


@worker_shutting_down.connect(dispatch_uid="moc-jobs-shutting-down")
def _on_shutting_down(sender: Any = None, **kwargs: Any) -> None:
    _requested.set()
