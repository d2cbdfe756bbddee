"""/api/v1/goals/: reading, creating, editing and moving goals through their states."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.goals.domain.states import GoalState
from apps.goals.models import Goal, GoalEvent
from tests.goals.factories import GoalFactory

pytestmark = pytest.mark.django_db

GOALS = "/api/v1/goals/"
Client = Callable[[Role | None], APIClient]


def detail(goal: Goal, suffix: str = "") -> str:
    return f"{GOALS}{goal.pk}/{suffix}"


def test_anonymous_callers_cannot_list_goals(client_as: Client) -> None:
    assert client_as(None).get(GOALS).status_code in {401, 403}


def test_a_viewer_lists_goals_in_queue_order(client_as: Client) -> None:
    low = GoalFactory(state=GoalState.ACTIVE, priority=10)
    high = GoalFactory(state=GoalState.ACTIVE, priority=90)

    response = client_as(Role.VIEWER).get(GOALS)

    assert response.status_code == 200
    assert [g["id"] for g in response.json()["results"]] == [high.pk, low.pk]


def test_a_goal_shows_the_states_it_can_move_to(client_as: Client) -> None:
    goal = GoalFactory(state=GoalState.ACTIVE)

    body = client_as(Role.VIEWER).get(detail(goal)).json()

    assert body["allowed_transitions"] == ["abandoned", "achieved", "failed", "paused"]


def test_goals_filter_by_state(client_as: Client) -> None:
    GoalFactory(state=GoalState.DRAFT)
    paused = GoalFactory(state=GoalState.PAUSED)

    response = client_as(Role.VIEWER).get(GOALS, {"state": "paused"})

    assert [g["id"] for g in response.json()["results"]] == [paused.pk]


def test_a_viewer_cannot_create_a_goal(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(GOALS, {"title": "x"})

    assert response.status_code == 403


def test_an_operator_creates_a_draft_goal_they_own(client_as: Client) -> None:
    client = client_as(Role.OPERATOR)

    response = client.post(
        GOALS, {"title": "Serve llama", "kind": "serve_model", "target": {"model": "llama"}, "priority": 70}
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["state"], body["priority"], body["owner"]["username"]) == ("draft", 70, "operator-1")


def test_create_names_the_target_field_when_it_does_not_fit_the_kind(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(GOALS, {"title": "t", "kind": "improve_metric", "target": {}})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["target"]


def test_create_names_the_priority_field_when_out_of_range(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(GOALS, {"title": "t", "priority": 500})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["priority"]


def test_an_operator_edits_an_open_goal(client_as: Client) -> None:
    goal = GoalFactory(state=GoalState.ACTIVE)

    response = client_as(Role.OPERATOR).patch(detail(goal), {"priority": 95, "progress": 0.5})

    assert response.status_code == 200
    assert (response.json()["priority"], response.json()["progress"]) == (95, 0.5)


def test_editing_an_ended_goal_is_a_conflict(client_as: Client) -> None:
    goal = GoalFactory(state=GoalState.ABANDONED)

    response = client_as(Role.OPERATOR).patch(detail(goal), {"title": "again"})

    assert response.status_code == 409
    assert response.json()["error"] == "goal_closed"


def test_a_viewer_cannot_edit_a_goal(client_as: Client) -> None:
    goal = GoalFactory()

    assert client_as(Role.VIEWER).patch(detail(goal), {"title": "mine"}).status_code == 403


def test_goals_cannot_be_deleted_only_abandoned(client_as: Client) -> None:
    goal = GoalFactory()

    response = client_as(Role.ADMIN).delete(detail(goal))

    assert response.status_code == 405
    assert Goal.objects.filter(pk=goal.pk).exists()


def test_an_operator_activates_a_draft(client_as: Client) -> None:
    goal = GoalFactory()

    response = client_as(Role.OPERATOR).post(detail(goal, "transition/"), {"state": "active", "reason": "go"})

    assert response.status_code == 200
    assert response.json()["state"] == "active"


def test_a_forbidden_move_is_a_conflict_that_says_what_is_allowed(client_as: Client) -> None:
    goal = GoalFactory(state=GoalState.DRAFT)

    response = client_as(Role.OPERATOR).post(detail(goal, "transition/"), {"state": "achieved"})

    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"
    assert "it can go to abandoned, active" in response.json()["detail"]


def test_a_transition_to_an_unknown_state_names_the_state_field(client_as: Client) -> None:
    goal = GoalFactory()

    response = client_as(Role.OPERATOR).post(detail(goal, "transition/"), {"state": "done"})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["state"]


def test_a_viewer_cannot_move_a_goal(client_as: Client) -> None:
    goal = GoalFactory()

    response = client_as(Role.VIEWER).post(detail(goal, "transition/"), {"state": "active"})

    assert response.status_code == 403
    assert Goal.objects.get(pk=goal.pk).state == GoalState.DRAFT


def test_the_events_of_a_goal_are_its_history_oldest_first(client_as: Client) -> None:
    goal = GoalFactory(state=GoalState.PAUSED)
    GoalEvent.objects.create(goal=goal, from_state="draft", to_state="active")
    GoalEvent.objects.create(goal=goal, from_state="active", to_state="paused", reason="wait")

    response = client_as(Role.VIEWER).get(detail(goal, "events/"))

    assert [(e["to_state"], e["reason"]) for e in response.json()] == [("active", ""), ("paused", "wait")]


def test_the_queue_lists_only_active_goals_in_work_order(client_as: Client) -> None:
    first = GoalFactory(state=GoalState.ACTIVE, priority=90)
    second = GoalFactory(state=GoalState.ACTIVE, priority=20)
    GoalFactory(state=GoalState.DRAFT, priority=100)

    response = client_as(Role.VIEWER).get(f"{GOALS}queue/")

    assert [g["id"] for g in response.json()] == [first.pk, second.pk]


def test_an_operators_key_creates_a_goal_owned_by_the_keys_owner(
    key_client: Callable[..., APIClient],
) -> None:
    response = key_client(Role.OPERATOR).post(GOALS, {"title": "via a program"})

    assert response.status_code == 201
    assert response.json()["owner"]["username"].startswith("operator")


def test_a_viewer_key_of_an_operator_cannot_create_a_goal(key_client: Callable[..., APIClient]) -> None:
    response = key_client(Role.VIEWER, owner_role=Role.OPERATOR).post(GOALS, {"title": "x"})

    assert response.status_code == 403
