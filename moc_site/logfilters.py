"""Log filters for MOC's processes."""

from __future__ import annotations

import logging

# Periodic tasks that run every few seconds: their routine "received" and "succeeded" lines would
# bury everything else in a worker's log (and the run command's console). Their failures, retries
# and anything they log themselves still show.
ROUTINE_TASKS = ("apps.deployments.tasks.releases_advance",)
_ROUTINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


class RoutineTasks(logging.Filter):
    """Drops the INFO lines Celery writes for each run of a ROUTINE_TASKS task."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in _ROUTINE_LOGGERS:
            return True
        message = record.getMessage()
        return not any(task in message for task in ROUTINE_TASKS)
