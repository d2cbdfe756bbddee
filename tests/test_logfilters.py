"""The routine lines of a task that runs every few seconds stay out of the log; the rest stays in."""

from __future__ import annotations

import logging

import pytest

from moc_site.logfilters import RoutineTasks

ADVANCE = "apps.deployments.tasks.releases_advance"


def record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    "line",
    [
        record("celery.worker.strategy", logging.INFO, "Task %s[%s] received", ADVANCE, "abc"),
        record("celery.app.trace", logging.INFO, "Task %s[%s] succeeded in %ss: %s", ADVANCE, "abc", 0.01, 0),
        record("celery.beat", logging.INFO, "Scheduler: Sending due task x (%s)", ADVANCE),
    ],
)
def test_a_routine_tasks_info_lines_are_dropped(line: logging.LogRecord) -> None:
    assert RoutineTasks().filter(line) is False


@pytest.mark.parametrize(
    "line",
    [
        record("celery.app.trace", logging.ERROR, "Task %s[%s] raised unexpected: boom", ADVANCE, "abc"),
        record("celery.app.trace", logging.INFO, "Task %s[%s] succeeded", "apps.jobs.tasks.job_run", "abc"),
        record("apps.deployments.rollout.engine", logging.INFO, "release 4 promoted by %s", ADVANCE),
        record("celery.app.trace", logging.INFO, "Task %s[%s] retry: Retry in 2s", ADVANCE, "abc"),
    ],
)
def test_failures_other_tasks_and_the_tasks_own_lines_stay(line: logging.LogRecord) -> None:
    assert RoutineTasks().filter(line) is True
