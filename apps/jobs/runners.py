"""Which code runs each kind of job: kind -> a callable `run(job, report) -> Outcome`.

Entries are dotted paths imported only when a worker runs a job, so web processes never
import what runners need (NVML today, training libraries later). A kind without an entry
cannot be created: a job nobody can run would sit in its queue forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from apps.jobs.domain.kinds import JobKind

if TYPE_CHECKING:
    from apps.jobs.models import Job
    from apps.jobs.reporting import Outcome, Report

Runner = Callable[["Job", "Report"], "Outcome"]

RUNNERS: dict[str, str] = {
    JobKind.SELFTEST.value: "apps.jobs.selftest.run",
    JobKind.FINE_TUNE.value: "apps.jobs.training.finetune.run",
    JobKind.EVALUATE.value: "apps.jobs.measuring.evaluate.run",
    JobKind.BENCHMARK.value: "apps.jobs.measuring.benchmark.run",
    JobKind.CONVERT.value: "apps.jobs.converting.convert.run",
}


def has_runner(kind: str) -> bool:
    return kind in RUNNERS


def runner_for(kind: str) -> Runner | None:
    path = RUNNERS.get(kind)
    return import_string(path) if path else None
