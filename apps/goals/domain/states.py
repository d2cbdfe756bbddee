"""The goal state machine.

draft → active ⇄ paused; an active goal ends achieved, failed or abandoned; a draft or a
paused goal can only be abandoned (a paused goal is not being pursued, so it is resumed
before it can be judged).
"""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class GoalState(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ACHIEVED = "achieved"
    FAILED = "failed"
    ABANDONED = "abandoned"


G = GoalState
GOAL = StateMachine(
    "goal",
    GoalState,
    initial=G.DRAFT,
    transitions={
        G.DRAFT: {G.ACTIVE, G.ABANDONED},
        G.ACTIVE: {G.PAUSED, G.ACHIEVED, G.FAILED, G.ABANDONED},
        G.PAUSED: {G.ACTIVE, G.ABANDONED},
    },
)

# States in which an operator may still edit a goal's title, target, priority or due date.
EDITABLE = frozenset({G.DRAFT.value, G.ACTIVE.value, G.PAUSED.value})

# The verb an operator uses for each move (audit action, button label).
VERBS = {
    G.ACTIVE.value: "activate",
    G.PAUSED.value: "pause",
    G.ACHIEVED.value: "achieve",
    G.FAILED.value: "fail",
    G.ABANDONED.value: "abandon",
}


def verb(src: str, dst: str) -> str:
    """The operator's word for a move: going back to active from paused is a resume."""
    if src == G.PAUSED and dst == G.ACTIVE:
        return "resume"
    return VERBS[dst]
