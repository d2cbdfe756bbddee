"""Per-request figures, written in batches off the request's path.

A worker thread that answered a request adds one line here and returns; a flusher thread
writes the lines (InferenceRecord rows) and each placement's use count, last use and eviction
priority once a second. A request costs no database write of its own, and the scheduler
still sees how much and how recently each placement is used.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import close_old_connections, transaction
from django.db.models import F

from apps.serving.domain.eviction import gdsf_priority
from apps.serving.models import InferenceRecord, Placement

log = logging.getLogger(__name__)
FLUSH_S = 1.0
# Past this many unwritten lines (a database down for minutes) the oldest are dropped: figures
# are worth less than the worker's memory.
MAX_PENDING = 50_000


@dataclass(frozen=True, slots=True)
class Line:
    at: float
    version_id: int
    placement_id: int | None
    task: str
    outcome: str
    error_class: str = ""
    queue_ms: float | None = None
    compute_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_ms: float | None = None  # taken to first token
    itl_ms: float | None = None  # mean between tokens


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Line] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, line: Line) -> None:
        with self._lock:
            self._pending.append(line)
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]

    def flush(self) -> int:
        """Write what is pending; the lines stay pending when the database refuses them."""
        with self._lock:
            lines, self._pending = self._pending, []
        if not lines:
            return 0
        try:
            _write(lines)
        except Exception:
            log.exception("could not record %d inference lines; keeping them for the next flush", len(lines))
            close_old_connections()
            with self._lock:
                self._pending[:0] = lines
            return 0
        return len(lines)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="moc-inference-records", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()


@transaction.atomic
def _write(lines: list[Line]) -> None:
    InferenceRecord.objects.bulk_create(
        [
            InferenceRecord(
                at=datetime.fromtimestamp(line.at, tz=UTC),
                version_id=line.version_id,
                placement_id=line.placement_id,
                task=line.task,
                outcome=line.outcome,
                error_class=line.error_class,
                queue_ms=line.queue_ms,
                compute_ms=line.compute_ms,
                tokens_in=line.tokens_in,
                tokens_out=line.tokens_out,
                ttft_ms=line.ttft_ms,
                itl_ms=line.itl_ms,
            )
            for line in lines
        ]
    )
    uses: dict[int, tuple[int, float]] = defaultdict(lambda: (0, 0.0))
    for line in lines:
        if line.placement_id is not None:
            count, last = uses[line.placement_id]
            uses[line.placement_id] = (count + 1, max(last, line.at))
    # One UPDATE per placement: its uses, its last use, and its eviction priority from the new
    # count (GDSF's H = the device's clock + uses x reload cost / size). Only this worker
    # serves these placements, so the count read here plus this batch is the new count.
    for p in Placement.objects.filter(pk__in=list(uses)).select_related("device"):
        count, last = uses[p.pk]
        priority = gdsf_priority(
            clock=p.device.eviction_clock,
            uses=p.use_count + count,
            load_seconds=p.load_seconds or 1.0,
            size_bytes=max(1, p.held_bytes),
        )
        Placement.objects.filter(pk=p.pk).update(
            use_count=F("use_count") + count,
            last_used_at=datetime.fromtimestamp(last, tz=UTC),
            priority=priority,
        )


RECORDER = Recorder()
