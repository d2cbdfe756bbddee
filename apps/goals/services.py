"""Writes to goals: create, edit while open, and move through the state machine."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.core import audit
from apps.core.domain.errors import Conflict
from apps.core.transitions import InvalidTransition, transition
from apps.goals.domain.queue import PRIORITY_DEFAULT
from apps.goals.domain.states import EDITABLE, GOAL, GoalState, verb
from apps.goals.domain.targets import GoalKind, target_errors
from apps.goals.models import Goal, GoalEvent

UPDATABLE_FIELDS = frozenset({"title", "description", "kind", "target", "priority", "due_at", "progress"})


class GoalClosed(Conflict):
    code = "goal_closed"


def _check_target(kind: str, target: Any) -> None:
    errors = target_errors(kind, target)
    if errors:
        raise ValidationError({"target": errors})


def _log(goal: Goal, src: str, dst: str, reason: str, actor: AbstractBaseUser | None) -> None:
    # bulk_create skips the audit signals: the audit record of the goal itself says what happened.
    GoalEvent.objects.bulk_create(
        [GoalEvent(goal=goal, from_state=src, to_state=dst, reason=reason, actor=_person(actor))]
    )


def _person(actor: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return actor if actor is not None and actor.is_authenticated else None


@transaction.atomic
def goal_create(
    *,
    owner: AbstractBaseUser,
    title: str,
    kind: str = GoalKind.CUSTOM.value,
    target: dict[str, Any] | None = None,
    priority: int = PRIORITY_DEFAULT,
    description: str = "",
    due_at: dt.datetime | None = None,
) -> Goal:
    """A new goal in draft, owned by `owner`."""
    target = {} if target is None else target
    _check_target(kind, target)
    goal = Goal(
        owner=_person(owner),
        title=title,
        kind=kind,
        target=target,
        priority=priority,
        description=description,
        due_at=due_at,
    )
    goal.full_clean()
    goal.save()
    _log(goal, "", goal.state, "", owner)
    return goal


@transaction.atomic
def goal_update(*, goal: Goal, **changes: Any) -> Goal:
    """Edit a goal that has not ended; the kind may change only while it is a draft."""
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in sorted(unknown)})
    goal = Goal.objects.select_for_update().get(pk=goal.pk)
    if goal.state not in EDITABLE:
        raise GoalClosed(f"The goal is {goal.state}; a goal that has ended can no longer be changed.")
    if "kind" in changes and changes["kind"] != goal.kind and goal.state != GoalState.DRAFT:
        raise ValidationError({"kind": "The kind can change only while the goal is a draft."})
    if "kind" in changes or "target" in changes:
        _check_target(changes.get("kind", goal.kind), changes.get("target", goal.target))
    for name, value in changes.items():
        setattr(goal, name, value)
    goal.full_clean()
    goal.save()
    return goal


@transaction.atomic
def goal_transition(*, goal: Goal, to: str, reason: str = "", actor: AbstractBaseUser | None = None) -> Goal:
    """Move a goal to `to`; the reason of a final move is kept as the goal's outcome."""
    src = goal.state
    now = timezone.now()
    changes: dict[str, Any] = {}
    if to == GoalState.ACTIVE and goal.started_at is None:
        changes["started_at"] = now
    if to in GOAL.terminal:
        changes["finished_at"] = now
        changes["outcome"] = reason
    if to == GoalState.ACHIEVED:
        changes["progress"] = 1.0
    if not transition(goal, to, machine=GOAL, **changes):
        # Another request moved it first; judge the move against where it is now.
        goal.refresh_from_db()
        raise InvalidTransition(GOAL.name, goal.state, to, GOAL.allowed(goal.state))
    _log(goal, src, to, reason, actor)
    audit.record(verb(src, to), goal, changes={"state": [src, to]})
    return goal
