"""Reading goals: the listing order, the work queue, the Overview card."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.goals import selectors
from apps.goals.domain.queue import QueuedGoal, listing_order
from apps.goals.domain.states import GoalState
from tests.goals.factories import GoalFactory

pytestmark = pytest.mark.django_db


def test_the_listing_query_orders_goals_as_the_domain_rule_does() -> None:
    now = timezone.now()
    for state, priority, due_h in [
        (GoalState.DRAFT, 90, None),
        (GoalState.ACTIVE, 50, 48),
        (GoalState.ACTIVE, 50, 2),
        (GoalState.ACTIVE, 50, None),
        (GoalState.ACTIVE, 80, None),
        (GoalState.PAUSED, 99, 1),
        (GoalState.ABANDONED, 100, None),
    ]:
        GoalFactory(state=state, priority=priority, due_at=now + dt.timedelta(hours=due_h) if due_h else None)
    rows = list(selectors.goal_list())

    expected = listing_order(
        QueuedGoal(id=g.pk, state=g.state, priority=g.priority, due_at=g.due_at, created_at=g.created_at)
        for g in rows
    )

    assert [g.pk for g in rows] == [q.id for q in expected]


def test_the_work_queue_lists_active_goals_highest_priority_first() -> None:
    low = GoalFactory(state=GoalState.ACTIVE, priority=10)
    high = GoalFactory(state=GoalState.ACTIVE, priority=90)
    GoalFactory(state=GoalState.PAUSED, priority=100)

    assert selectors.goal_work_queue() == [high, low]


def test_the_overview_card_counts_active_goals_and_names_the_overdue() -> None:
    GoalFactory(state=GoalState.ACTIVE, due_at=timezone.now() - dt.timedelta(hours=1))
    GoalFactory(state=GoalState.ACTIVE)
    GoalFactory(state=GoalState.DRAFT)

    [card] = selectors.overview_cards()

    assert (card["value"], card["hint"]) == ("2", "0 paused · 1 draft · 1 overdue")
