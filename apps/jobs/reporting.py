"""What a runner gets to talk back with (`Report`) and gives back when done (`Outcome`).

A long runner (a fine-tune, an evaluation) calls `step()` after each step: it records progress,
pace, ETA and metric points, and answers whether the runner should stop now (`Stop`) — a cancel, a
request to yield the device to higher-priority work, the worker shutting down, the time limit.
The runner then writes a checkpoint when the stop asks for one and raises `report.stop_now(stop)`.
Writes are batched (at most one row update per FLUSH_S, metric points in bulk) so reporting costs a
fine-tune next to nothing; the stop is looked for at most every STOP_CHECK_S.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.conf import settings
from django.utils import timezone

from apps.jobs import live, services, shutdown
from apps.jobs.domain.kinds import LogLevel
from apps.jobs.domain.pace import Pace
from apps.jobs.models import Job
from apps.jobs.services import running

# A runner's row update and metric points are written at most this often (and at the end).
FLUSH_S = 0.5
# ... and whether it was asked to stop is read from the database at most this often.
STOP_CHECK_S = 0.25


class JobStopped(Exception):
    """The job was cancelled, or taken from this worker by the reconciler: stop now."""


class JobTimedOut(JobStopped):
    """The job ran past the task time limit: stop now."""

    def __init__(self, limit_s: int) -> None:
        super().__init__(f"the job ran past the task time limit of {limit_s} s")
        self.limit_s = limit_s


class JobYielded(JobStopped):
    """The job stopped to go back to the queue: its device's memory is wanted by higher-priority
    work (`preempt`), or its worker is shutting down (`shutdown`). It resumes from its checkpoint."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the job yields: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a runner should stop now, and whether it should write a checkpoint first."""

    reason: str  # cancel | preempt | shutdown | timeout
    save: bool


@dataclass(frozen=True)
class Outcome:
    """A runner's result. With an error_class the job ends FAILED, its result still kept."""

    result: dict[str, Any] = field(default_factory=dict)
    error_class: str = ""
    error: str = ""


class Report:
    """Progress, metric points, checkpoints and log lines from a runner to the job's rows and its
    page (live over the websocket, apps.jobs.live).

    Every report is also the runner's check for the task time limit, and `progress()` its check
    for a cancel: when the job ran past `deadline` it raises JobTimedOut, and when the job is no
    longer running under this task it raises JobStopped. `step()` returns a Stop instead, so the
    runner can checkpoint before it stops.

    The limit is enforced here, cooperatively, because Celery's own time limits do nothing
    in the thread pool device-queue workers run: a job past the limit would run on while the
    broker, its visibility timeout over, handed its message out again.
    """

    def __init__(self, job: Job, task_id: str) -> None:
        self.job_id = job.pk
        self.task_id = task_id
        self.limit_s: int = settings.MOC_TASK_TIME_LIMIT
        self.deadline = (job.started_at or timezone.now()) + dt.timedelta(seconds=self.limit_s)
        self._pace = Pace()
        self._points: list[tuple[str, int, float]] = []
        self._row: dict[str, Any] = {}
        self._flushed = 0.0
        self._stop_checked = 0.0
        self._stop: Stop | None = None
        self._settled = False

    def past_deadline(self) -> bool:
        return timezone.now() >= self.deadline

    def settle(self) -> None:
        """The runner's result is on disk (a fine-tune's output folder): from now on no report raises
        a stop. Registering the result takes moments, and a stop now would leave it written but not
        registered, for a scan to find as a stray model (a cancel that lands after the runner
        finished does not hide the outcome; past the time limit the result is kept as well)."""
        self._settled = True

    def progress(self, fraction: float, message: str = "") -> None:
        self._check_deadline()
        fraction = min(max(fraction, 0.0), 1.0)
        if (
            not services.job_progress(
                job_id=self.job_id, task_id=self.task_id, progress=fraction, message=message
            )
            and not self._settled
        ):
            raise JobStopped(f"job #{self.job_id} is no longer running under task {self.task_id}")
        live.job_changed(self.job_id)

    def log(
        self, message: str, *, level: LogLevel = LogLevel.INFO, data: dict[str, Any] | None = None
    ) -> None:
        self._check_deadline()
        services.job_log(job_id=self.job_id, message=message, level=level, data=data)
        live.job_changed(self.job_id)

    def step(
        self,
        *,
        step: int,
        total: int,
        tokens: int = 0,
        metrics: Mapping[str, float] | None = None,
        memory_bytes: int | None = None,
        message: str = "",
    ) -> Stop | None:
        """Record that `step` of `total` steps is done (`tokens` processed since the last call,
        `metrics` at this step), and say whether to stop now."""
        now = time.monotonic()
        pace = self._pace.add(step=step, tokens=tokens, now=now)
        for name, value in (metrics or {}).items():
            self._points.append((name, step, float(value)))
        self._row.update(
            step=step,
            total_steps=total,
            progress=min(1.0, step / total) if total else 0.0,
            eta_s=pace.eta_s(step=step, total=total),
            tokens_per_s=pace.tokens_per_s,
        )
        if memory_bytes is not None:
            self._row["memory_bytes"] = memory_bytes
        if message:
            self._row["message"] = message[:300]
        if now - self._flushed >= FLUSH_S or (total and step >= total):
            self.flush()
        return self.stop_asked()

    def metrics(self, *, step: int, values: Mapping[str, float]) -> None:
        """Metric points at `step` outside a step report (an evaluation's losses), written at once."""
        self._points.extend((name, step, float(value)) for name, value in values.items())
        self.flush()

    def flush(self) -> None:
        """Write what was reported since the last flush (called by step() on its own schedule)."""
        self._flushed = time.monotonic()
        points, self._points = self._points, []
        row, self._row = self._row, {}
        if row and not services.job_report(job_id=self.job_id, task_id=self.task_id, changes=row):
            # Refused: the job is no longer this task's to run. Why, and whether to checkpoint
            # first, is the job's own answer (a cancel with save keeps its checkpoint).
            asked = services.job_stop_asked(job_id=self.job_id, task_id=self.task_id)
            self._stop = self._stop or Stop(*(asked or ("cancel", False)))
        if points and not services.job_metrics_add(job_id=self.job_id, task_id=self.task_id, points=points):
            self._stop = self._stop or Stop("cancel", save=False)
        if row or points:
            live.job_changed(self.job_id)

    def stop_asked(self) -> Stop | None:
        """Whether the runner should stop now, and checkpoint first: looked up at most every
        STOP_CHECK_S; the worker's own shutdown and the time limit are seen at once."""
        if self.past_deadline():
            return Stop("timeout", save=True)
        if shutdown.requested():
            return Stop("shutdown", save=True)
        now = time.monotonic()
        if self._stop is None and now - self._stop_checked >= STOP_CHECK_S:
            self._stop_checked = now
            asked = services.job_stop_asked(job_id=self.job_id, task_id=self.task_id)
            self._stop = Stop(*asked) if asked else None
        return self._stop

    def stop_if_asked(self) -> None:
        """Stop now when asked: between the pieces of a long stretch with nothing to checkpoint yet
        (reading and encoding the data, loading the model)."""
        stop = self.stop_asked()
        if stop is not None:
            self.stop_now(stop)

    def stop_now(self, stop: Stop) -> NoReturn:
        """Raise what ends the run for `stop` (after the runner's checkpoint, when it asked for one)."""
        self.flush()
        if stop.reason == "timeout":
            raise JobTimedOut(self.limit_s)
        if stop.reason in ("preempt", "shutdown"):
            raise JobYielded(stop.reason)
        raise JobStopped(f"job #{self.job_id} was cancelled")

    def ensure_running(self) -> None:
        """Raise JobStopped unless this task still runs the job: asked before the runner writes to
        disk what another attempt of the job could be reading (its checkpoints)."""
        if not running.job_runs(job_id=self.job_id, task_id=self.task_id):
            self._lost()

    def rewind(self, *, step: int) -> None:
        """The run starts at `step` (0: from the start): the job's metric points past it, written by
        an earlier run, are deleted, and so are any not yet written, so each step has one point."""
        after = step if step > 0 else -1
        self._points = [point for point in self._points if point[1] <= after]
        if not running.job_metrics_rewind(job_id=self.job_id, task_id=self.task_id, step=after):
            self._lost()

    def checkpoint_saved(self, *, step: int, path: str, size_bytes: int, reason: str) -> None:
        """A complete checkpoint is on disk (its marker written)."""
        if (
            services.job_checkpoint_add(
                job_id=self.job_id,
                task_id=self.task_id,
                step=step,
                path=path,
                size_bytes=size_bytes,
                reason=reason,
            )
            is None
        ):
            self._lost()
        live.job_changed(self.job_id)

    def checkpoints_pruned(self, *, steps: Collection[int]) -> None:
        """The checkpoints at `steps` were deleted (keep the last MOC_CHECKPOINT_KEEP)."""
        if services.job_checkpoints_drop(job_id=self.job_id, task_id=self.task_id, steps=steps) is None:
            self._lost()

    def checkpoints_release(self, *, job_ids: Sequence[int]) -> list[int]:
        """The job's output is registered: forget the checkpoints of `job_ids` (the job, then the jobs
        it retries) and return those whose folders the runner may now delete (not one that another
        unfinished retry may still resume from; none when the job is no longer this task's)."""
        cleared = running.job_checkpoints_clear(job_id=self.job_id, task_id=self.task_id, job_ids=job_ids)
        return cleared or []

    def _lost(self) -> NoReturn:
        """The job is no longer this task's to run: a stop without a save (a cancel, as flush says)."""
        self._stop = Stop("cancel", save=False)
        raise JobStopped(f"job #{self.job_id} is no longer running under task {self.task_id}")

    def _check_deadline(self) -> None:
        if self.past_deadline() and not self._settled:
            raise JobTimedOut(self.limit_s)
