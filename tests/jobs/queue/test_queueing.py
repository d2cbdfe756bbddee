"""domain.queueing: the order waiting jobs are tried in, the devices kept for those that wait, and
which running fine-tune yields to a higher-priority job; without a database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from apps.jobs.domain.queueing import Running, Waiting, kept_for, order, preemption_victim

NOW = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)
GIB = 1024**3


def ago(seconds: int) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def test_higher_priority_goes_first_then_the_older_then_the_lower_id() -> None:
    jobs = [
        Waiting(id=1, priority=50, queued_at=ago(10)),
        Waiting(id=2, priority=90, queued_at=ago(1)),
        Waiting(id=3, priority=50, queued_at=ago(60)),
        Waiting(id=4, priority=50, queued_at=ago(60)),
    ]

    assert [j.id for j in order(jobs, now=NOW)] == [2, 3, 4, 1]


def test_a_job_waiting_out_its_backoff_is_not_due() -> None:
    jobs = [
        Waiting(id=1, priority=90, queued_at=ago(10), not_before=NOW + dt.timedelta(seconds=5)),
        Waiting(id=2, priority=10, queued_at=ago(10), not_before=ago(1)),
    ]

    assert [j.id for j in order(jobs, now=NOW)] == [2]


def test_a_blocked_job_keeps_every_device_big_enough_for_it() -> None:
    capacities = {1: 24 * GIB, 2: 80 * GIB, 3: 8 * GIB}
    blocked = [Waiting(id=7, priority=90, queued_at=ago(1), need_bytes=20 * GIB)]

    assert kept_for(blocked, capacities) == {1: 7, 2: 7}


def test_a_blocked_pinned_job_keeps_only_its_device_for_the_first_job_ahead() -> None:
    capacities = {1: 24 * GIB, 2: 80 * GIB}
    blocked = [
        Waiting(id=7, priority=90, queued_at=ago(1), need_bytes=GIB, device_id=2),
        Waiting(id=8, priority=80, queued_at=ago(1), need_bytes=GIB, device_id=2),
    ]

    assert kept_for(blocked, capacities) == {2: 7}


def running(pk: int, priority: int, *, device: int = 1, reserved: int = 20 * GIB, **fields: Any) -> Running:
    values = {"started_at": ago(100), "preemptible": True, **fields}
    return Running(id=pk, priority=priority, device_id=device, reserved_bytes=reserved, **values)


HEAD = Waiting(id=99, priority=80, queued_at=ago(1), need_bytes=16 * GIB)


def test_the_lowest_priority_fine_tune_whose_room_is_enough_yields() -> None:
    victims = [running(1, 50), running(2, 20), running(3, 20, reserved=GIB)]

    assert preemption_victim(HEAD, victims, {1: 0}).id == 2


def test_of_equal_priority_the_one_started_last_yields() -> None:
    victims = [running(1, 20, started_at=ago(500)), running(2, 20, started_at=ago(50))]

    assert preemption_victim(HEAD, victims, {1: 0}).id == 2


def test_equal_or_higher_priority_work_is_never_preempted() -> None:
    assert preemption_victim(HEAD, [running(1, 80), running(2, 95)], {1: 0}) is None


def test_only_fine_tunes_are_preempted() -> None:
    assert preemption_victim(HEAD, [running(1, 10, preemptible=False)], {1: 0}) is None


def test_what_is_free_beside_it_counts_towards_the_room() -> None:
    small = running(1, 10, reserved=8 * GIB)

    assert preemption_victim(HEAD, [small], {1: 0}) is None
    assert preemption_victim(HEAD, [small], {1: 8 * GIB}) == small


def test_no_second_fine_tune_is_asked_while_one_there_is_yielding() -> None:
    victims = [running(1, 10, yielding=True), running(2, 10)]

    assert preemption_victim(HEAD, victims, {1: 0}) is None


def test_a_pinned_job_preempts_only_on_its_device() -> None:
    pinned = Waiting(id=99, priority=80, queued_at=ago(1), need_bytes=16 * GIB, device_id=2)

    assert preemption_victim(pinned, [running(1, 10, device=1)], {1: 0}) is None
    assert preemption_victim(pinned, [running(2, 10, device=2)], {2: 0}).id == 2
