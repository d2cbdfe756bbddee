"""What a job can be, how its failures are classified, and which parameters each kind takes."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

from apps.core.domain import tones
from apps.core.domain.queues import Queue


class JobKind(StrEnum):
    FINE_TUNE = "fine_tune"
    EVALUATE = "evaluate"
    BENCHMARK = "benchmark"
    CONVERT = "convert"
    SELFTEST = "selftest"  # housekeeping: a worker checks what it can reach and see


KIND_CHOICES = [
    (JobKind.FINE_TUNE.value, "Fine-tune"),
    (JobKind.EVALUATE.value, "Evaluate"),
    (JobKind.BENCHMARK.value, "Benchmark"),
    (JobKind.CONVERT.value, "Convert"),
    (JobKind.SELFTEST.value, "Self-test"),
]


class ErrorClass(StrEnum):
    """Why a job failed, in words a retry policy and an operator can both act on."""

    RUNNER_ERROR = "runner_error"  # the runner raised
    CHECK_FAILED = "check_failed"  # the runner finished and found something wrong
    TIMEOUT = "timeout"  # it ran past the task time limit (MOC_TASK_TIME_LIMIT)
    WORKER_LOST = "worker_lost"  # its worker died or vanished, too many times
    POISONED = "poisoned"  # its task message kept killing workers
    INTERNAL = "internal"  # MOC's own code raised while running it (recording its outcome, say)
    OUT_OF_MEMORY = "out_of_memory"  # the device ran out of memory (a fine-tune first retries smaller)
    BAD_DATA = "bad_data"  # a dataset row it could not use (the row is named)
    RUNTIME_MISSING = "runtime_missing"  # the worker lacks a library the kind needs (torch, peft, ...)
    DEVICE_LOST = "device_lost"  # the device stopped answering (a CUDA error, a lost GPU)
    CANCELLED = "cancelled"  # an operator cancelled it


# Failures worth another attempt by themselves (with backoff, up to max_attempts): the same job on
# a sound worker or device may well succeed. Bad data, a missing runtime or a time limit will not,
# and neither will out of memory: the same parameters on the same reservation run out again. Only a
# fine-tune retries it, inside its run, at half the batch (MOC_JOB_OOM_RETRIES times).
TRANSIENT = frozenset({ErrorClass.WORKER_LOST, ErrorClass.DEVICE_LOST})
# Kinds that run on a device worker and reserve device memory in serving's ledger while they run.
DEVICE_KINDS = frozenset({JobKind.FINE_TUNE, JobKind.EVALUATE, JobKind.BENCHMARK})
# Kinds only an admin may queue: conversion unpickles (weights-only) a file an operator named.
ADMIN_KINDS = frozenset({JobKind.CONVERT})


def retry_delay_s(attempt: int, *, base_s: float, cap_s: float = 600.0) -> float:
    """How long an automatic retry waits after `attempt` (1-based) failed: base, doubled each time."""
    return float(min(cap_s, base_s * 2.0 ** max(0, attempt - 1)))


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LEVEL_CHOICES = [(level.value, level.value.capitalize()) for level in LogLevel]
tones.declare({LogLevel.WARNING: "warn", LogLevel.ERROR: "bad"})

# The checks a self-test runs, in order.
SELFTEST_CHECKS = ("database", "redis", "channel_layer", "device")

PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT = 0, 100, 50
# Celery's Redis transport keeps one list per priority step, 0 to 9 (priority_steps in
# CELERY_BROKER_TRANSPORT_OPTIONS), and a worker empties step 0 first.
BROKER_PRIORITY_STEPS = 10
MAX_ATTEMPTS_LIMIT = 10
# A queue name is a Celery queue: `default`, or a device's `gpu.<node>.<index>`.
QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


def broker_priority(priority: int) -> int:
    """The Celery-Redis priority (0 is taken first, 9 last) of a MOC priority (0-100, higher first).

    MOC's 101 values fall into 10 bands of about equal width: 90-100 is broker priority 0,
    0-9 is broker priority 9.
    """
    clamped = min(max(priority, PRIORITY_MIN), PRIORITY_MAX)
    return (PRIORITY_MAX - clamped) * BROKER_PRIORITY_STEPS // (PRIORITY_MAX - PRIORITY_MIN + 1)


def time_limit_error(limit_s: int) -> str:
    """What a job that ran past the task time limit says about it."""
    return f"It ran past the task time limit of {limit_s} s (MOC_TASK_TIME_LIMIT)."


def queue_problem(queue: str) -> str | None:
    """Why `queue` cannot name a Celery queue, or None."""
    if not QUEUE_RE.match(queue):
        return (
            "A queue name is 1-100 letters, digits, '.', '_', ':' or '-', starting with a letter or digit "
            "(e.g. 'default' or 'gpu.node1.0')."
        )
    return None


def queue_consumer_problem(queue: str, live_queues: Collection[str]) -> str | None:
    """Why a job sent to `queue` would never run, given the queues live workers consume, or None.

    Such a job would wait forever: the reconciler leaves jobs on queues nobody consumes alone.
    """
    if queue == Queue.DEFAULT or queue in live_queues:
        return None
    live = ", ".join(f"'{q}'" for q in sorted(set(live_queues) - {Queue.DEFAULT})) or "none right now"
    return (
        f"No live worker consumes the queue '{queue}', so the job would never run. "
        f"Use '{Queue.DEFAULT}' or a queue a live worker consumes (live queues: {live})."
    )


def params_problems(kind: str, params: Any) -> dict[str, str]:
    """Problems with a job's parameters, by parameter name ('' for the whole object)."""
    if not isinstance(params, Mapping):
        return {"": "Parameters must be a JSON object."}
    if kind == JobKind.SELFTEST:
        return _selftest_params_problems(params)
    return {}


def _selftest_params_problems(params: Mapping[str, Any]) -> dict[str, str]:
    problems = {name: "The self-test takes no such parameter." for name in params if name != "checks"}
    checks = params.get("checks")
    if checks is None:
        return problems
    if not isinstance(checks, list) or not checks or not all(isinstance(c, str) for c in checks):
        problems["checks"] = "A non-empty list of check names."
    elif unknown := sorted(set(checks) - set(SELFTEST_CHECKS)):
        problems["checks"] = f"Unknown checks {unknown}; choose from {list(SELFTEST_CHECKS)}."
    return problems
