"""Log filters for MOC's processes."""

from __future__ import annotations

import logging

# Periodic tasks that run every few seconds: their routine "received" and "succeeded" lines would
# bury everything else in a worker's log (and the run command's console). Their failures, retries
# and anything they log themselves still show.
ROUTINE_TASKS = ("apps.deployments.tasks.releases_advance",)
_ROUTINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


# What Celery says at INFO of every run: the beat sending it, the worker receiving it, its success.
_ROUTINE_LINES = ("Sending due task", "] received", "] succeeded in")


class RoutineTasks(logging.Filter):
    """Drops the INFO lines Celery writes for each run of a ROUTINE_TASKS task (not a retry's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in _ROUTINE_LOGGERS:
            return True
        message = record.getMessage()
        routine = any(line in message for line in _ROUTINE_LINES)
        return not (routine and any(task in message for task in ROUTINE_TASKS))
