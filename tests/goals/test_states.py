"""The goal state machine, as data (no database)."""

from __future__ import annotations

import pytest

from apps.core.domain.statemachine import InvalidTransition
from apps.goals.domain.states import EDITABLE, GOAL, GoalState, verb

G = GoalState


def test_a_new_goal_starts_as_a_draft() -> None:
    assert GOAL.initial == G.DRAFT


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (G.DRAFT, G.ACTIVE),
        (G.DRAFT, G.ABANDONED),
        (G.ACTIVE, G.PAUSED),
        (G.PAUSED, G.ACTIVE),
        (G.ACTIVE, G.ACHIEVED),
        (G.ACTIVE, G.FAILED),
        (G.ACTIVE, G.ABANDONED),
        (G.PAUSED, G.ABANDONED),
    ],
)
def test_allowed_moves(src: GoalState, dst: GoalState) -> None:
    assert GOAL.can(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (G.DRAFT, G.ACHIEVED),
        (G.DRAFT, G.PAUSED),
        (G.PAUSED, G.ACHIEVED),
        (G.PAUSED, G.FAILED),
        (G.ACTIVE, G.DRAFT),
        (G.ACHIEVED, G.ACTIVE),
        (G.ABANDONED, G.ACTIVE),
    ],
)
def test_forbidden_moves_raise_invalid_transition(src: GoalState, dst: GoalState) -> None:
    with pytest.raises(InvalidTransition):
        GOAL.check(src, dst)


def test_achieved_failed_and_abandoned_are_final() -> None:
    assert GOAL.terminal == {G.ACHIEVED, G.FAILED, G.ABANDONED}


def test_only_goals_that_have_not_ended_are_editable() -> None:
    assert frozenset(GoalState) - GOAL.terminal == EDITABLE


def test_going_back_to_active_from_paused_is_called_resume() -> None:
    assert verb(G.PAUSED, G.ACTIVE) == "resume"


def test_going_to_active_from_draft_is_called_activate() -> None:
    assert verb(G.DRAFT, G.ACTIVE) == "activate"
