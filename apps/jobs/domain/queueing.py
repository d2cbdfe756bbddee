"""The job queue's rules: which waiting job goes first, where a later one may backfill, and which
running fine-tune is asked to yield its memory (pure Python; the dispatcher reads the rows).

Order. Waiting jobs go by priority (higher first), then by when they went into the queue (older
first), then by id; a job whose automatic retry waits out its backoff (`not_before` in the future)
is not due yet and is skipped.

Backfill. The dispatcher tries each due job in that order. A job that finds no room waits, and the
devices it could run on are kept for it: its pinned device, or else every device where it would fit
once everything that may be freed is freed (`reach`: the device's capacity less what pinned serving
placements hold; running jobs end, and idle models may be evicted). A later job may still start on
any other device (backfill), never on one kept for a job ahead of it, so a stream of small jobs
cannot starve a large one of the room it waits for. A job that could never fit anywhere (what is
pinned leaves too little) keeps nothing, so it cannot stop the queue behind it; its message says so.

Alone. A benchmark measures latency and peak memory, which anything else on its device would
distort: no other job is placed on a device where a benchmark runs or holds a reservation, and a
benchmark waits until no other job runs or holds a reservation on a device (`sharing_refused`).

Preemption (checkpoint, then yield; MOC_JOB_PREEMPT, off by default). When a waiting job finds no
room, a running fine-tune of strictly lower priority may be asked to checkpoint and go back to the
queue, on a device the waiting job may use where the room it holds plus what is free there would be
enough. The lowest priority goes first, then the one started last (it has done the least), then
the newest. One at a time: while a fine-tune on such a device is already yielding, no other is asked.
Equal or higher priority work is never preempted, and only fine-tunes are (they checkpoint).

A pinned serving load refused for room (apps.serving.signals.room_wanted) asks by the same rule, as
a want above any job's priority (PINNED_LOAD_PRIORITY) over the devices it would fit on, each with
what it needs there (`Waiting.need_on`). The room it needs is then held on that device for
LOAD_HOLD_S (services.load_holds: the dispatcher counts it as taken, for every job), and the
fine-tune that yields to it stays out of the queue as long after it yields: long enough for the
load, tried again, to find the room.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from apps.jobs.domain.kinds import PRIORITY_MAX, JobKind

PINNED_LOAD_PRIORITY = PRIORITY_MAX + 1  # a pinned serving load comes before any job
LOAD_HOLD_S = 60.0  # how long room is held for a pinned load, and its fine-tune keeps out of the queue


@dataclass(frozen=True, slots=True)
class Waiting:
    """A job waiting in the queue, as the rules see it."""

    id: int
    priority: int
    queued_at: dt.datetime
    not_before: dt.datetime | None = None  # an automatic retry's backoff
    need_bytes: int = 0  # device memory it must reserve; 0 for a kind that holds none
    device_id: int | None = None  # the device it is pinned to, if any
    need_on: Mapping[int, int] = field(default_factory=dict)  # per device id, a need other than need_bytes

    def need(self, device_id: int) -> int:
        """What it needs on this device."""
        return self.need_on.get(device_id, self.need_bytes)


@dataclass(frozen=True, slots=True)
class Running:
    """A running job that holds device memory, as a preemption candidate."""

    id: int
    priority: int
    device_id: int
    reserved_bytes: int
    started_at: dt.datetime | None
    preemptible: bool  # a fine-tune: it checkpoints and yields when asked
    yielding: bool = False  # already asked to yield


def order(jobs: Iterable[Waiting], *, now: dt.datetime) -> list[Waiting]:
    """The due jobs, first to try first: priority (higher first), then age, then id."""
    due = [j for j in jobs if j.not_before is None or j.not_before <= now]
    return sorted(due, key=lambda j: (-j.priority, j.queued_at, j.id))


def usable_devices(job: Waiting, reach: Mapping[int, int]) -> frozenset[int]:
    """The devices `job` could ever run on (its pinned one only, when pinned): those whose `reach`,
    the most room the device could ever give a job, is enough for what it needs there."""
    scope = reach.keys() if job.device_id is None else {job.device_id} & reach.keys()
    return frozenset(pk for pk in scope if reach[pk] >= job.need(pk))


def kept_for(blocked: Iterable[Waiting], reach: Mapping[int, int]) -> dict[int, int]:
    """The devices kept for the jobs ahead that wait for room, each with the first job it is kept
    for (`blocked` in queue order): no later job may start there."""
    kept: dict[int, int] = {}
    for job in blocked:
        for pk in usable_devices(job, reach):
            kept.setdefault(pk, job.id)
    return kept


def sharing_refused(kind: str, holding: Mapping[int, Collection[str]]) -> dict[int, str]:
    """The devices a job of `kind` may not go to because a benchmark runs alone (see the module),
    each with why; `holding`: per device, the kinds of the jobs that run or hold a reservation there."""
    if kind == JobKind.BENCHMARK:
        return {
            pk: "runs other jobs, and a benchmark waits until it runs alone on its device"
            for pk, kinds in holding.items()
            if kinds
        }
    return {
        pk: "runs a benchmark, which runs alone on its device"
        for pk, kinds in holding.items()
        if JobKind.BENCHMARK in kinds
    }


def preemption_victim(
    waiting: Waiting, running: Sequence[Running], free_bytes: Mapping[int, int]
) -> Running | None:
    """The running fine-tune to ask to checkpoint and yield for `waiting`, or None (see the module)."""
    scope = {waiting.device_id} if waiting.device_id is not None else None
    on_scope = [r for r in running if scope is None or r.device_id in scope]
    candidates = [
        r
        for r in on_scope
        if r.preemptible
        and r.priority < waiting.priority
        and free_bytes.get(r.device_id, 0) + r.reserved_bytes >= waiting.need(r.device_id)
    ]
    if not candidates:
        return None
    if any(r.yielding and r.device_id in {c.device_id for c in candidates} for r in on_scope):
        return None
    return min(
        (c for c in candidates if not c.yielding),
        key=lambda r: (r.priority, -(r.started_at.timestamp() if r.started_at else 0.0), -r.id),
        default=None,
    )
