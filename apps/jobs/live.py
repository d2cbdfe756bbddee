"""A job's page and the jobs list, live: what changed is announced on the job's channel-layer group
(`job.<id>`) and the list's (`jobs`).

The runner's Report calls `job_changed` (its row, series, checkpoints or log moved) as often as it
likes; it only marks the job and returns (no database read, no Redis: a runner is never held up or
failed by its page). A publisher thread per process sends each marked job at most once per GAP_S:
one message, encoded once, carrying the job's row (state, percent, step, ETA, tokens/s, memory), the
metric points and log lines written since this process last sent it, and its checkpoints. The `jobs`
group gets the row alone, for the list.

Each batch of points (and of lines) says which id it follows (`after`) and which it ends at
(`until`): a page that holds less than `after` missed some (another process sent them, or it
connected late) and reads the snapshot (`snapshot()`, served by the page's live view) again.

Why the channel layer and not a relay like telemetry's: a job's page has a handful of viewers and
gets at most 1/GAP_S messages a second per job, far below what the layer carries (DESIGN.md, "Live
fan-out"); coalescing here keeps it there however fast a runner reports.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, transaction

from apps.core import events
from apps.core.domain import tones
from apps.core.transitions import transitioned
from apps.jobs import selectors
from apps.jobs.domain.progress import eta_text
from apps.jobs.models import Job, JobEvent, JobMetric

log = logging.getLogger(__name__)

# A job is published at most this often per process (the runner's Report writes every 0.5 s).
GAP_S = 0.5
# An update carries at most this many new metric points and log lines (a page that missed more
# reads the snapshot); a snapshot carries at most SNAPSHOT_POINTS points and LOG_TAIL lines.
POINTS_MAX = 500
LINES_MAX = 100
SNAPSHOT_POINTS = 20_000
LOG_TAIL = 200
# The list's group, and the type of each message (the consumers' method names).
LIST_GROUP = "jobs"
UPDATE = "job.update"
ROW = "jobs.row"


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def job_changed(job_id: int) -> None:
    """The job's row, metric series, checkpoints or log changed: its page and the list hear of it soon."""
    PUBLISHER.mark(job_id)


def job_transitioned(sender: Any, *, instance: Job, **kwargs: Any) -> None:
    """A receiver of core.transitions.transitioned: a job moved (queued, running, over); announced
    once the move is committed, so the publisher reads the new state."""
    job_id = instance.pk
    transaction.on_commit(lambda: job_changed(job_id))


def connect() -> None:
    """Announce every job's state changes (called from JobsConfig.ready)."""
    transitioned.connect(job_transitioned, sender=Job, dispatch_uid="moc-jobs-live-transitioned")


class Coalescer:
    """Which jobs were marked, and which of them may be sent now: each at most once per `gap_s`.

    Thread-safe; marking is a set insertion under a lock, so a runner pays nothing for it.
    """

    def __init__(self, gap_s: float) -> None:
        self.gap_s = gap_s
        self._lock = threading.Lock()
        self._marked: set[int] = set()
        self._sent: dict[int, float] = {}  # job id -> when it was last taken

    def mark(self, job_id: int) -> None:
        with self._lock:
            self._marked.add(job_id)

    def take_due(self, now: float) -> tuple[list[int], float | None]:
        """The marked jobs that may be sent at `now` (recorded as sent then), and the seconds until
        the next of the others may be (None when no other is marked)."""
        due: list[int] = []
        wait: float | None = None
        with self._lock:
            for job_id in list(self._marked):
                left = self._sent.get(job_id, -self.gap_s) + self.gap_s - now
                if left <= 0:
                    due.append(job_id)
                    self._marked.discard(job_id)
                    self._sent[job_id] = now
                else:
                    wait = left if wait is None else min(wait, left)
            # Forget jobs that are quiet: their next mark is due at once anyway.
            for job_id, at in list(self._sent.items()):
                if now - at >= self.gap_s and job_id not in self._marked:
                    del self._sent[job_id]
        return sorted(due), wait


@dataclass
class Cursor:
    """The last metric point and log line this process sent of a job."""

    metric: int = 0
    event: int = 0


def _point(p: JobMetric) -> list[Any]:
    return [p.pk, p.name, p.step, p.value]


def _line(e: JobEvent) -> list[Any]:
    return [e.pk, e.at.isoformat(), e.level, tones.tone(e.level), e.message]


def _batch(rows: list[Any], after: int, limit: int, encode: Any) -> tuple[dict[str, Any], int]:
    """A batch of points or lines newer than `after` (selectors return limit+1 to show a gap)."""
    if len(rows) > limit:
        after, rows = rows[0].pk, rows[1:]
    until = rows[-1].pk if rows else after
    return {"after": after, "until": until, "items": [encode(r) for r in rows]}, until


def job_row(job: Job) -> dict[str, Any]:
    """What the jobs list shows of a job, and the head of its page."""
    return {
        "id": job.pk,
        "state": job.state,
        "state_label": job.get_state_display(),
        "tone": tones.tone(job.state),
        "terminal": job.terminal,
        "percent": job.percent,
        "step": job.step,
        "total_steps": job.total_steps,
        "eta_s": job.eta_s,
        "eta": eta_text(job.eta_s) if not job.terminal else "",
        "tokens_per_s": job.tokens_per_s,
        "memory_bytes": job.memory_bytes,
        "message": job.message,
        "error_class": job.error_class,
        "attempts": job.attempts,
    }


def job_update(
    job: Job, cursor: Cursor, *, points_max: int = POINTS_MAX, lines_max: int = LINES_MAX
) -> dict[str, Any]:
    """The job's row, its points and lines after `cursor` (moved past them) and its checkpoints."""
    points = selectors.job_metrics_after(job_id=job.pk, after=cursor.metric, limit=points_max)
    lines = selectors.job_events_after(job_id=job.pk, after=cursor.event, limit=lines_max)
    metrics, cursor.metric = _batch(points, cursor.metric, points_max, _point)
    log_lines, cursor.event = _batch(lines, cursor.event, lines_max, _line)
    checkpoints = [
        [c.step, c.size_bytes, c.reason, c.at.isoformat()] for c in selectors.job_checkpoints(job=job)
    ]
    output = job.output_version
    return {
        **job_row(job),
        "metrics": metrics,
        "log": log_lines,
        "checkpoints": checkpoints,
        "output_version": None
        if output is None
        else {"label": str(output), "url": output.get_absolute_url()},
    }


def snapshot(job: Job) -> dict[str, Any]:
    """Everything a job's live page draws, from the beginning: its series, the log tail, its row."""
    return job_update(job, Cursor(), points_max=SNAPSHOT_POINTS, lines_max=LOG_TAIL)


class Publisher:
    """The process's sender: a daemon thread that publishes marked jobs as they come due."""

    def __init__(self, gap_s: float = GAP_S) -> None:
        self.coalescer = Coalescer(gap_s)
        self.cursors: dict[int, Cursor] = {}
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def mark(self, job_id: int) -> None:
        self.coalescer.mark(job_id)
        self._ensure_thread()
        self._wake.set()

    def publish_due(self, now: float) -> float | None:
        """Send every job due at `now`; the seconds until the next is due (None: none waits)."""
        due, wait = self.coalescer.take_due(now)
        for job_id in due:
            self.publish(job_id)
        return wait

    def publish(self, job_id: int) -> bool:
        """Read the job and send its update and list row; False when it is gone or Redis is down."""
        job = selectors.job_list().filter(pk=job_id).first()
        if job is None:
            self.cursors.pop(job_id, None)
            return False
        cursor = self.cursors.setdefault(job_id, Cursor())
        payload = job_update(job, cursor)
        if job.terminal:
            del self.cursors[job_id]
        sent = events.publish(job_group(job_id), UPDATE, {"text": events.encode(UPDATE, payload)})
        if sent:
            events.publish(LIST_GROUP, ROW, {"text": events.encode(ROW, job_row(job))})
        return sent

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="moc-jobs-live", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        wait: float | None = None
        while True:
            self._wake.wait(timeout=wait)
            self._wake.clear()
            wait = self.run_once(time.monotonic())

    def run_once(self, now: float) -> float | None:
        """One round of the thread: publish what is due, then let go of a stale database connection.
        Never raises: the thread is the process's only publisher, so whatever fails here (the
        database or Redis, or closing a broken connection) is logged and the next round goes on;
        the pages re-read on reconnect. The seconds until the next round (None: when marked)."""
        wait: float | None
        try:
            wait = self.publish_due(now)
        except Exception:
            log.exception("could not publish job updates")
            wait = GAP_S
        try:
            close_old_connections()
        except Exception:
            log.exception("could not close the job publisher's database connection")
        return wait


# The process's one publisher (its thread starts at the first mark).
PUBLISHER = Publisher()
