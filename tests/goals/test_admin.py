from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.goals.domain.states import GoalState
from tests.goals.factories import GoalEventFactory, GoalFactory

pytestmark = pytest.mark.django_db


def test_the_goal_changelist_searches_titles(admin_client_: Client) -> None:
    GoalFactory(title="serve llama")
    GoalFactory(title="free vram")

    response = admin_client_.get(reverse("admin:goals_goal_changelist"), {"q": "llama"})

    assert [g.title for g in response.context["cl"].result_list] == ["serve llama"]


def test_the_goal_changelist_filters_by_state(admin_client_: Client) -> None:
    GoalFactory(title="a", state=GoalState.ACTIVE)
    GoalFactory(title="d", state=GoalState.DRAFT)

    response = admin_client_.get(reverse("admin:goals_goal_changelist"), {"state__exact": "active"})

    assert [g.title for g in response.context["cl"].result_list] == ["a"]


def test_the_goal_change_page_shows_its_history(admin_client_: Client) -> None:
    event = GoalEventFactory(reason="ready to go")

    response = admin_client_.get(reverse("admin:goals_goal_change", args=[event.goal.pk]))

    assert response.status_code == 200
    assert "ready to go" in response.content.decode()
