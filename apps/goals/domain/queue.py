"""The order in which goals get GPU work: the priority queue.

Higher priority first (0–100); among equal priorities the earliest due date first, and
goals with no due date after those with one; then the oldest goal first, so equal goals
are served in the order they were asked for. The id breaks the last tie, so the order is
total and stable across calls.

Only active goals are in the work queue; lists of all goals show live goals before
paused ones, drafts and finished ones, each group in queue order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from apps.goals.domain.states import GoalState

PRIORITY_MIN = 0
PRIORITY_MAX = 100
PRIORITY_DEFAULT = 50

# Lower rank is listed first.
STATE_RANK = {
    GoalState.ACTIVE.value: 0,
    GoalState.PAUSED.value: 1,
    GoalState.DRAFT.value: 2,
    GoalState.ACHIEVED.value: 3,
    GoalState.FAILED.value: 3,
    GoalState.ABANDONED.value: 3,
}


@dataclass(frozen=True, slots=True)
class QueuedGoal:
    id: int
    state: str
    priority: int
    due_at: dt.datetime | None
    created_at: dt.datetime


def queue_key(goal: QueuedGoal) -> tuple[int, bool, float, float, int]:
    no_due = goal.due_at is None
    due = goal.due_at.timestamp() if goal.due_at is not None else 0.0
    return (-goal.priority, no_due, due, goal.created_at.timestamp(), goal.id)


def work_queue(goals: Iterable[QueuedGoal]) -> list[QueuedGoal]:
    """The active goals in the order they get GPU work."""
    return sorted((g for g in goals if g.state == GoalState.ACTIVE), key=queue_key)


def listing_order(goals: Iterable[QueuedGoal]) -> list[QueuedGoal]:
    """All goals: live ones first, each state group in queue order."""
    return sorted(goals, key=lambda g: (STATE_RANK[g.state], *queue_key(g)))
