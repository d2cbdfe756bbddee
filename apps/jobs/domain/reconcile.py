"""The reconciler's rules: which jobs were lost by the broker or by their worker, and what to do.

The database is the source of truth for work; the broker may lose a message (a dispatch
queued on commit by a process that died) and a worker may die mid-job. `decide()` looks at
plain snapshots of the open jobs and the live workers and says, for each job that needs it,
whether to send it again, put it back in its queue, fail it or finish its cancel.

A queued job is sent again only when its message never reached the broker, or when its last
send is older than the broker's visibility timeout. A message the broker holds is not lost
because it waits: a job behind a six-hour job on a busy queue simply waits its turn, and
re-sending it every few minutes would only pile up copies of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from apps.jobs.domain.states import JobState


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    id: int
    state: str
    queue: str
    worker: str
    attempts: int
    max_attempts: int
    queued_at: dt.datetime  # when it last went into its queue (created, sent again, put back)
    dispatched_at: dt.datetime | None  # when the broker took its latest message; None: not yet
    started_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class LiveWorker:
    hostname: str
    queues: frozenset[str]
    started_at: dt.datetime | None = None


class Action(StrEnum):
    REDISPATCH = "redispatch"  # QUEUED, its message never reached the broker or is long overdue
    REQUEUE = "requeue"  # RUNNING on a lost worker, attempts left: back to QUEUED and send
    FAIL = "fail"  # RUNNING on a lost worker, no attempts left
    CANCEL = "cancel"  # CANCELLING on a lost worker: nothing left to stop


@dataclass(frozen=True, slots=True)
class Decision:
    job_id: int
    action: Action
    reason: str


def decide(
    jobs: Iterable[JobSnapshot],
    workers: Sequence[LiveWorker],
    *,
    now: dt.datetime,
    redispatch_after: dt.timedelta,
    visibility_timeout: dt.timedelta,
    running_lease: dt.timedelta,
) -> list[Decision]:
    """What to do about each open job; jobs that are fine get no decision.

    `redispatch_after` is how long a send may take to reach the broker (it runs on commit);
    `visibility_timeout` is the broker's: by then it would have handed out a message again.
    """
    live_hosts = {w.hostname: w for w in workers}
    consumed = {q for w in workers for q in w.queues}
    decisions = []
    for job in jobs:
        decision = (
            _queued(job, consumed, now, redispatch_after, visibility_timeout)
            if job.state == JobState.QUEUED
            else _active(job, live_hosts, now, running_lease)
        )
        if decision is not None:
            decisions.append(decision)
    return decisions


def _queued(
    job: JobSnapshot,
    consumed: set[str],
    now: dt.datetime,
    redispatch_after: dt.timedelta,
    visibility_timeout: dt.timedelta,
) -> Decision | None:
    # Nobody consumes the queue: the message is waiting there, not lost. Sending it again
    # would only pile up copies for the worker that eventually comes.
    if job.queue not in consumed:
        return None
    if job.dispatched_at is None:
        waited = now - job.queued_at
        if waited < redispatch_after:  # its send, on commit, may still be on its way
            return None
        return Decision(
            job.id,
            Action.REDISPATCH,
            f"its message never reached the broker in {int(waited.total_seconds())}s",
        )
    waited = now - job.dispatched_at
    if waited < visibility_timeout:  # the broker has it: it waits its turn
        return None
    return Decision(
        job.id,
        Action.REDISPATCH,
        f"no worker took it in {int(waited.total_seconds())}s, longer than the broker's visibility "
        f"timeout, although '{job.queue}' is consumed",
    )


def _active(
    job: JobSnapshot, live_hosts: dict[str, LiveWorker], now: dt.datetime, lease: dt.timedelta
) -> Decision | None:
    if job.state not in {JobState.RUNNING, JobState.CANCELLING}:
        return None
    if _still_running(job, live_hosts.get(job.worker)):
        return None
    # A fresh start gets the lease to show its first heartbeat.
    if job.started_at is not None and now - job.started_at < lease:
        return None
    who = f"worker '{job.worker}'" if job.worker else "its worker"
    if job.state == JobState.CANCELLING:
        return Decision(job.id, Action.CANCEL, f"{who} was lost while stopping it")
    if job.attempts < job.max_attempts:
        return Decision(
            job.id, Action.REQUEUE, f"{who} was lost during attempt {job.attempts} of {job.max_attempts}"
        )
    return Decision(
        job.id,
        Action.FAIL,
        f"{who} was lost during attempt {job.attempts} of {job.max_attempts}; no attempts left",
    )


def _still_running(job: JobSnapshot, worker: LiveWorker | None) -> bool:
    """Its worker is alive, and is the same process that started it.

    A worker restarted under the same hostname (killed, then brought back by its
    supervisor) sends heartbeats again, but the job it ran died with the old process.
    """
    if worker is None:
        return False
    return worker.started_at is None or job.started_at is None or worker.started_at <= job.started_at
