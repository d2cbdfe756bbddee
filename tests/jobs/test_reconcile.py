"""The reconciler's rules, as plain functions over snapshots: no database, no Redis."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.jobs.domain.reconcile import Action, JobSnapshot, LiveWorker, decide
from apps.jobs.domain.states import JobState

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
AFTER = dt.timedelta(seconds=300)
VISIBILITY = dt.timedelta(hours=7)
LEASE = dt.timedelta(seconds=120)
WORKER = LiveWorker(
    hostname="celery@gpu1",
    queues=frozenset({"default", "gpu.gpu1.0"}),
    started_at=NOW - dt.timedelta(hours=1),
)


def job(**fields: object) -> JobSnapshot:
    values = {
        "id": 1,
        "state": JobState.QUEUED,
        "queue": "default",
        "worker": "",
        "attempts": 0,
        "max_attempts": 3,
        "queued_at": NOW - dt.timedelta(seconds=10),
        "dispatched_at": NOW - dt.timedelta(seconds=10),
        "started_at": None,
    }
    values.update(fields)
    return JobSnapshot(**values)


def ago(seconds: int) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def decide_one(
    snapshot: JobSnapshot, workers: tuple[LiveWorker, ...] = (WORKER,)
) -> tuple[Action, str] | None:
    decisions = decide(
        [snapshot],
        workers,
        now=NOW,
        redispatch_after=AFTER,
        visibility_timeout=VISIBILITY,
        running_lease=LEASE,
    )
    assert len(decisions) <= 1
    return (decisions[0].action, decisions[0].reason) if decisions else None


@pytest.mark.parametrize(
    ("queued_at", "expected"),
    [(ago(10), None), (ago(299), None), (ago(300), Action.REDISPATCH), (ago(3600), Action.REDISPATCH)],
)
def test_queued_job_whose_message_never_reached_the_broker_is_sent_again_after_the_threshold(
    queued_at: dt.datetime, expected: Action | None
) -> None:
    decision = decide_one(job(queued_at=queued_at, dispatched_at=None))

    assert (decision[0] if decision else None) == expected


@pytest.mark.parametrize(
    ("dispatched_at", "expected"),
    [
        (ago(300), None),
        (ago(6 * 3600), None),
        (ago(7 * 3600 - 1), None),
        (ago(7 * 3600), Action.REDISPATCH),
        (ago(24 * 3600), Action.REDISPATCH),
    ],
)
def test_queued_job_the_broker_took_is_sent_again_only_past_the_visibility_timeout(
    dispatched_at: dt.datetime, expected: Action | None
) -> None:
    decision = decide_one(job(queued_at=ago(24 * 3600), dispatched_at=dispatched_at))

    assert (decision[0] if decision else None) == expected


def test_queued_job_waiting_its_turn_on_a_busy_queue_is_not_sent_again() -> None:
    busy = [job(id=n, queued_at=ago(3 * 3600), dispatched_at=ago(3 * 3600)) for n in range(1, 4)]

    assert (
        decide(
            busy,
            [WORKER],
            now=NOW,
            redispatch_after=AFTER,
            visibility_timeout=VISIBILITY,
            running_lease=LEASE,
        )
        == []
    )


def test_a_message_that_never_reached_the_broker_says_so() -> None:
    assert decide_one(job(queued_at=ago(600), dispatched_at=None)) == (
        Action.REDISPATCH,
        "its message never reached the broker in 600s",
    )


def test_a_message_past_the_visibility_timeout_says_so() -> None:
    assert decide_one(job(dispatched_at=ago(8 * 3600)))[1] == (
        "no worker took it in 28800s, longer than the broker's visibility timeout, "
        "although 'default' is consumed"
    )


def test_queued_job_on_a_queue_nobody_consumes_is_left_waiting() -> None:
    assert decide_one(job(queue="gpu.gone.0", queued_at=ago(3600), dispatched_at=None)) is None


def test_queued_job_waits_while_no_worker_is_live_at_all() -> None:
    assert decide_one(job(queued_at=ago(3600), dispatched_at=None), workers=()) is None


@pytest.mark.parametrize(
    ("attempts", "max_attempts", "expected"),
    [(1, 3, Action.REQUEUE), (2, 3, Action.REQUEUE), (3, 3, Action.FAIL), (1, 1, Action.FAIL)],
)
def test_running_job_of_a_lost_worker_is_requeued_while_attempts_remain(
    attempts: int, max_attempts: int, expected: Action
) -> None:
    snapshot = job(
        state=JobState.RUNNING,
        worker="celery@dead",
        attempts=attempts,
        max_attempts=max_attempts,
        started_at=ago(600),
    )

    assert decide_one(snapshot)[0] == expected


def test_failing_a_lost_job_says_which_worker_and_attempt() -> None:
    snapshot = job(state=JobState.RUNNING, worker="celery@dead", attempts=3, started_at=ago(600))

    assert decide_one(snapshot)[1] == "worker 'celery@dead' was lost during attempt 3 of 3; no attempts left"


def test_running_job_of_a_live_worker_is_left_alone() -> None:
    assert (
        decide_one(job(state=JobState.RUNNING, worker="celery@gpu1", attempts=1, started_at=ago(600))) is None
    )


def test_running_job_gets_the_lease_before_its_missing_worker_counts_as_lost() -> None:
    assert (
        decide_one(job(state=JobState.RUNNING, worker="celery@dead", attempts=1, started_at=ago(119))) is None
    )


def test_running_job_of_a_worker_restarted_under_the_same_name_is_lost() -> None:
    restarted = LiveWorker(hostname="celery@gpu1", queues=frozenset({"default"}), started_at=ago(30))
    snapshot = job(state=JobState.RUNNING, worker="celery@gpu1", attempts=1, started_at=ago(600))

    assert decide_one(snapshot, workers=(restarted,))[0] == Action.REQUEUE


def test_cancelling_job_of_a_lost_worker_is_cancelled_not_retried() -> None:
    snapshot = job(state=JobState.CANCELLING, worker="celery@dead", attempts=1, started_at=ago(600))

    assert decide_one(snapshot)[0] == Action.CANCEL


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_finished_jobs_get_no_decision(state: JobState) -> None:
    assert (
        decide_one(job(state=state, worker="celery@dead", dispatched_at=ago(9999), started_at=ago(9999)))
        is None
    )


def test_decisions_cover_only_the_jobs_that_need_one() -> None:
    jobs = [
        job(id=1, dispatched_at=ago(10)),
        job(id=2, queued_at=ago(900), dispatched_at=None),
        job(id=3, state=JobState.RUNNING, worker="celery@gpu1", attempts=1, started_at=ago(900)),
        job(id=4, state=JobState.RUNNING, worker="celery@dead", attempts=1, started_at=ago(900)),
    ]

    decisions = decide(
        jobs, [WORKER], now=NOW, redispatch_after=AFTER, visibility_timeout=VISIBILITY, running_lease=LEASE
    )

    assert [(d.job_id, d.action) for d in decisions] == [(2, Action.REDISPATCH), (4, Action.REQUEUE)]
