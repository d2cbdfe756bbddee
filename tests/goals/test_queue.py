"""The order in which goals get GPU work (pure, no database)."""

from __future__ import annotations

import datetime as dt

from apps.goals.domain.queue import QueuedGoal, listing_order, work_queue
from apps.goals.domain.states import GoalState

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def goal(
    pk: int,
    *,
    priority: int = 50,
    due_in_h: float | None = None,
    age_h: float = 0,
    state: str = GoalState.ACTIVE,
) -> QueuedGoal:
    due = T0 + dt.timedelta(hours=due_in_h) if due_in_h is not None else None
    return QueuedGoal(
        id=pk, state=state, priority=priority, due_at=due, created_at=T0 - dt.timedelta(hours=age_h)
    )


def ids(goals: list[QueuedGoal]) -> list[int]:
    return [g.id for g in goals]


def test_higher_priority_goes_first() -> None:
    assert ids(work_queue([goal(1, priority=10), goal(2, priority=90)])) == [2, 1]


def test_priority_beats_an_earlier_due_date() -> None:
    assert ids(work_queue([goal(1, priority=10, due_in_h=1), goal(2, priority=90, due_in_h=100)])) == [2, 1]


def test_among_equal_priorities_the_earliest_due_goes_first() -> None:
    assert ids(work_queue([goal(1, due_in_h=48), goal(2, due_in_h=2)])) == [2, 1]


def test_a_goal_with_a_due_date_goes_before_one_without() -> None:
    assert ids(work_queue([goal(1, age_h=10), goal(2, due_in_h=500)])) == [2, 1]


def test_among_equal_priority_and_due_the_oldest_goes_first() -> None:
    assert ids(work_queue([goal(1, age_h=1), goal(2, age_h=5)])) == [2, 1]


def test_the_id_breaks_a_complete_tie() -> None:
    assert ids(work_queue([goal(7), goal(3)])) == [3, 7]


def test_the_work_queue_holds_only_active_goals() -> None:
    goals = [goal(1, state=GoalState.PAUSED), goal(2), goal(3, state=GoalState.DRAFT)]

    assert ids(work_queue(goals)) == [2]


def test_listing_puts_live_goals_before_paused_drafts_and_ended_ones() -> None:
    goals = [
        goal(1, state=GoalState.ACHIEVED, priority=100),
        goal(2, state=GoalState.DRAFT, priority=90),
        goal(3, state=GoalState.PAUSED, priority=80),
        goal(4, state=GoalState.ACTIVE, priority=1),
    ]

    assert ids(listing_order(goals)) == [4, 3, 2, 1]


def test_listing_orders_each_state_group_by_the_queue_rule() -> None:
    goals = [goal(1, state=GoalState.DRAFT, priority=10), goal(2, state=GoalState.DRAFT, priority=20)]

    assert ids(listing_order(goals)) == [2, 1]
