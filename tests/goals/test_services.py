"""Writing goals: create, edit while open, move through the states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import RequestFactory

from apps.core import audit
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from apps.core.transitions import InvalidTransition
from apps.goals import services
from apps.goals.domain.states import GoalState
from apps.goals.domain.targets import GoalKind
from apps.goals.models import Goal, GoalEvent
from tests.goals.factories import GoalFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(make_user: Callable[..., Any]) -> Any:
    return make_user(Role.OPERATOR, "ada")


def test_create_makes_a_draft_owned_by_its_creator(person: Any) -> None:
    goal = services.goal_create(
        owner=person, title="Serve llama", kind=GoalKind.SERVE_MODEL, target={"model": "llama"}
    )

    assert (goal.state, goal.owner) == (GoalState.DRAFT, person)


def test_create_records_the_creation_in_the_history(person: Any) -> None:
    goal = services.goal_create(owner=person, title="t")

    assert list(goal.events.values_list("from_state", "to_state", "actor")) == [("", "draft", person.pk)]


def test_create_refuses_a_target_that_does_not_fit_the_kind(person: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.goal_create(owner=person, title="t", kind=GoalKind.IMPROVE_METRIC, target={"metric": "x"})

    assert list(caught.value.message_dict) == ["target"]


def test_create_refuses_a_priority_above_100(person: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.goal_create(owner=person, title="t", priority=101)

    assert "priority" in caught.value.message_dict


def test_update_changes_the_given_fields() -> None:
    goal = GoalFactory(state=GoalState.ACTIVE, priority=10)

    goal = services.goal_update(goal=goal, priority=80, title="faster")

    goal.refresh_from_db()
    assert (goal.priority, goal.title) == (80, "faster")


def test_update_of_an_ended_goal_is_a_conflict() -> None:
    goal = GoalFactory(state=GoalState.ACHIEVED)

    with pytest.raises(services.GoalClosed):
        services.goal_update(goal=goal, title="again")


def test_update_may_change_the_kind_of_a_draft() -> None:
    goal = GoalFactory(state=GoalState.DRAFT)

    goal = services.goal_update(goal=goal, kind=GoalKind.SERVE_MODEL, target={"model": "m"})

    assert goal.kind == GoalKind.SERVE_MODEL


def test_update_refuses_to_change_the_kind_of_an_active_goal() -> None:
    goal = GoalFactory(state=GoalState.ACTIVE)

    with pytest.raises(ValidationError) as caught:
        services.goal_update(goal=goal, kind=GoalKind.SERVE_MODEL, target={"model": "m"})

    assert list(caught.value.message_dict) == ["kind"]


def test_update_checks_a_new_target_against_the_current_kind() -> None:
    goal = GoalFactory(kind=GoalKind.SERVE_MODEL, target={"model": "m"})

    with pytest.raises(ValidationError) as caught:
        services.goal_update(goal=goal, target={"metric": "x"})

    assert list(caught.value.message_dict) == ["target"]


def test_update_refuses_fields_that_are_not_editable() -> None:
    goal = GoalFactory()

    with pytest.raises(ValidationError) as caught:
        services.goal_update(goal=goal, state=GoalState.ACHIEVED)

    assert list(caught.value.message_dict) == ["state"]


def test_activating_stamps_when_the_goal_started(person: Any) -> None:
    goal = GoalFactory()

    services.goal_transition(goal=goal, to=GoalState.ACTIVE, actor=person)

    goal.refresh_from_db()
    assert (goal.state, goal.started_at is not None) == (GoalState.ACTIVE, True)


def test_resuming_keeps_the_first_start_time() -> None:
    goal = GoalFactory()
    services.goal_transition(goal=goal, to=GoalState.ACTIVE)
    first_start = goal.started_at
    services.goal_transition(goal=goal, to=GoalState.PAUSED)

    services.goal_transition(goal=goal, to=GoalState.ACTIVE)

    goal.refresh_from_db()
    assert goal.started_at == first_start


def test_a_transition_is_recorded_in_the_history_with_reason_and_actor(person: Any) -> None:
    goal = GoalFactory(state=GoalState.ACTIVE)

    services.goal_transition(goal=goal, to=GoalState.PAUSED, reason="GPUs needed elsewhere", actor=person)

    event = GoalEvent.objects.get(goal=goal)
    assert (event.from_state, event.to_state, event.reason, event.actor) == (
        "active",
        "paused",
        "GPUs needed elsewhere",
        person,
    )


def test_ending_a_goal_keeps_the_reason_as_its_outcome() -> None:
    goal = GoalFactory(state=GoalState.ACTIVE)

    services.goal_transition(goal=goal, to=GoalState.FAILED, reason="model never converged")

    goal.refresh_from_db()
    assert (goal.outcome, goal.finished_at is not None) == ("model never converged", True)


def test_achieving_a_goal_sets_progress_to_complete() -> None:
    goal = GoalFactory(state=GoalState.ACTIVE, progress=0.4)

    services.goal_transition(goal=goal, to=GoalState.ACHIEVED)

    goal.refresh_from_db()
    assert goal.progress == 1.0


def test_a_forbidden_move_raises_and_changes_nothing() -> None:
    goal = GoalFactory(state=GoalState.DRAFT)

    with pytest.raises(InvalidTransition):
        services.goal_transition(goal=goal, to=GoalState.ACHIEVED)

    assert Goal.objects.get(pk=goal.pk).state == GoalState.DRAFT


def test_a_move_already_made_by_another_writer_raises() -> None:
    goal = GoalFactory(state=GoalState.ACTIVE)
    stale = Goal.objects.get(pk=goal.pk)
    services.goal_transition(goal=goal, to=GoalState.ABANDONED)

    with pytest.raises(InvalidTransition):
        services.goal_transition(goal=stale, to=GoalState.PAUSED)


def test_a_transition_during_a_request_is_audited_with_its_verb(
    person: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    goal = GoalFactory(state=GoalState.PAUSED)
    request = RequestFactory().post("/api/v1/goals/1/transition/")
    request.user = person
    token = audit.bind_request(request)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.goal_transition(goal=goal, to=GoalState.ACTIVE, actor=person)
    finally:
        audit.unbind_request(token)

    event = AuditEvent.objects.get(object_id=str(goal.pk))
    assert (event.action, event.changes) == ("resume", {"state": ["paused", "active"]})
