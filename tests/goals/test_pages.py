"""The goals pages: the list in queue order with its create form, and a goal's detail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.core.domain.roles import Role
from apps.goals.domain.states import GoalState
from apps.goals.models import Goal, GoalEvent
from tests.goals.factories import GoalFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def page_as(make_user: Callable[..., Any]) -> Callable[[Role], Client]:
    def make(role: Role) -> Client:
        client = Client()
        client.force_login(make_user(role))
        return client

    return make


def test_the_list_requires_login() -> None:
    response = Client().get(reverse("goals:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_list_shows_goals_in_queue_order(page_as: Callable[[Role], Client]) -> None:
    GoalFactory(title="low", state=GoalState.ACTIVE, priority=5)
    GoalFactory(title="high", state=GoalState.ACTIVE, priority=95)

    response = page_as(Role.VIEWER).get(reverse("goals:list"))

    assert [g.title for g in response.context["object_list"]] == ["high", "low"]


def test_the_empty_list_tells_an_operator_to_use_the_form(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.OPERATOR).get(reverse("goals:list"))

    assert "Add one with the form below" in response.content.decode()


def test_a_viewer_sees_no_create_form(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.VIEWER).get(reverse("goals:list"))

    assert "form" not in response.context


def test_an_operator_creates_a_goal_and_lands_on_it(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.OPERATOR).post(
        reverse("goals:list"), {"title": "Keep 20 GB free", "kind": "custom", "priority": 60, "target": "{}"}
    )

    goal = Goal.objects.get()
    assert (goal.title, goal.priority) == ("Keep 20 GB free", 60)
    assert response.status_code == 302
    assert response["Location"] == goal.get_absolute_url()


def test_the_create_form_shows_a_target_error_on_the_page(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.OPERATOR).post(
        reverse("goals:list"), {"title": "t", "kind": "serve_model", "priority": 50, "target": "{}"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["target"] == ["'model' is required for a serve_model goal"]
    assert not Goal.objects.exists()


def test_a_viewer_cannot_post_the_create_form(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.VIEWER).post(
        reverse("goals:list"), {"title": "t", "kind": "custom", "priority": 1}
    )

    assert response.status_code == 403


def test_the_detail_page_shows_the_history(page_as: Callable[[Role], Client]) -> None:
    goal = GoalFactory(state=GoalState.ACTIVE)
    GoalEvent.objects.create(goal=goal, from_state="draft", to_state="active", reason="capacity freed up")

    response = page_as(Role.VIEWER).get(goal.get_absolute_url())

    assert response.status_code == 200
    assert "capacity freed up" in response.content.decode()


def test_the_detail_page_shows_the_target_as_json(page_as: Callable[[Role], Client]) -> None:
    goal = GoalFactory(kind="serve_model", target={"model": "llama"})

    response = page_as(Role.VIEWER).get(goal.get_absolute_url())

    assert "<code>{&quot;model&quot;: &quot;llama&quot;}</code>" in response.content.decode()


def test_the_detail_page_offers_an_operator_the_allowed_moves(page_as: Callable[[Role], Client]) -> None:
    goal = GoalFactory(state=GoalState.PAUSED)

    response = page_as(Role.OPERATOR).get(goal.get_absolute_url())

    assert response.context["moves"] == [("abandoned", "abandon"), ("active", "resume")]


def test_an_operator_moves_a_goal_from_its_page(page_as: Callable[[Role], Client]) -> None:
    goal = GoalFactory(state=GoalState.DRAFT)

    response = page_as(Role.OPERATOR).post(reverse("goals:transition", args=[goal.pk]), {"state": "active"})

    assert response.status_code == 302
    assert Goal.objects.get(pk=goal.pk).state == GoalState.ACTIVE


def test_a_forbidden_move_from_the_page_is_reported_not_made(page_as: Callable[[Role], Client]) -> None:
    goal = GoalFactory(state=GoalState.DRAFT)

    response = page_as(Role.OPERATOR).post(
        reverse("goals:transition", args=[goal.pk]), {"state": "achieved"}, follow=True
    )

    assert "cannot go from &#x27;draft&#x27; to &#x27;achieved&#x27;" in response.content.decode()
    assert Goal.objects.get(pk=goal.pk).state == GoalState.DRAFT


def test_a_viewer_cannot_move_a_goal_from_the_page(page_as: Callable[[Role], Client]) -> None:
    goal = GoalFactory()

    response = page_as(Role.VIEWER).post(reverse("goals:transition", args=[goal.pk]), {"state": "active"})

    assert response.status_code == 403
