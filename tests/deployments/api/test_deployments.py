from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.states import DeploymentState
from apps.deployments.models import Deployment
from tests.deployments.factories import DeploymentFactory, ReleaseFactory
from tests.models.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/deployments/"
Client = Callable[[Role | None], APIClient]


def detail(pk: int, suffix: str = "") -> str:
    return f"{URL}{pk}/{suffix}"


def test_list_shows_deployments_to_a_viewer(client_as: Client) -> None:
    release = ReleaseFactory(deployment__name="chat")

    response = client_as(Role.VIEWER).get(URL)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["name"], row["state"], row["release_count"], row["current_release"]) == (
        "chat",
        "draft",
        1,
        None,
    )
    assert row["id"] == release.deployment_id


def test_list_refuses_anonymous_callers(client_as: Client) -> None:
    assert client_as(None).get(URL).status_code == 401


def test_list_filters_by_state(client_as: Client) -> None:
    DeploymentFactory(name="live", state=DeploymentState.ACTIVE)
    DeploymentFactory(name="idea")

    response = client_as(Role.VIEWER).get(URL, {"state": "active"})

    assert [row["name"] for row in response.json()["results"]] == ["live"]


def test_retrieve_of_an_unknown_deployment_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(detail(999_999)).status_code == 404


def test_operator_creates_a_deployment(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama")

    response = client_as(Role.OPERATOR).post(
        URL, {"name": "chat-prod", "registered_model": model.pk, "replicas": 2}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["state"], body["replicas"], body["registered_model"]["name"]) == (
        "chat-prod",
        "draft",
        2,
        "llama",
    )


def test_viewer_cannot_create_a_deployment(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(URL, {"name": "chat"}, format="json")

    assert response.status_code == 403
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": "Not Valid"}, "name"),
        ({"name": "chat", "replicas": -1}, "replicas"),
        ({"name": "chat", "strategy": "big_bang"}, "strategy"),
        ({"name": "chat", "registered_model": 999_999}, "registered_model"),
    ],
)
def test_create_names_the_bad_field(client_as: Client, payload: dict[str, Any], field: str) -> None:
    response = client_as(Role.OPERATOR).post(URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_create_refuses_a_taken_name(client_as: Client) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.OPERATOR).post(URL, {"name": "chat"}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"]["name"] == ["A deployment named 'chat' already exists."]


def test_operator_edits_a_deployment(client_as: Client) -> None:
    deployment = DeploymentFactory(replicas=1)

    response = client_as(Role.OPERATOR).patch(detail(deployment.pk), {"replicas": 3}, format="json")

    assert response.status_code == 200
    assert response.json()["replicas"] == 3


def test_the_name_cannot_be_changed(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")

    client_as(Role.OPERATOR).patch(detail(deployment.pk), {"name": "other"}, format="json")

    deployment.refresh_from_db()
    assert deployment.name == "chat"


def test_viewer_cannot_edit_a_deployment(client_as: Client) -> None:
    deployment = DeploymentFactory()

    assert (
        client_as(Role.VIEWER).patch(detail(deployment.pk), {"replicas": 3}, format="json").status_code == 403
    )


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        (DeploymentState.DRAFT, "activate", "active"),
        (DeploymentState.ACTIVE, "pause", "paused"),
        (DeploymentState.PAUSED, "retire", "retired"),
    ],
)
def test_operator_moves_a_deployment_through_its_states(
    client_as: Client, start: str, action: str, end: str
) -> None:
    deployment = DeploymentFactory(state=start)

    response = client_as(Role.OPERATOR).post(detail(deployment.pk, f"{action}/"))

    assert response.status_code == 200
    assert response.json()["state"] == end


def test_pausing_a_draft_is_a_409(client_as: Client) -> None:
    deployment = DeploymentFactory()

    response = client_as(Role.OPERATOR).post(detail(deployment.pk, "pause/"))

    assert response.status_code == 409
    assert "cannot go from 'draft' to 'paused'" in response.json()["detail"]


def test_viewer_cannot_retire_a_deployment(client_as: Client) -> None:
    deployment = DeploymentFactory(state=DeploymentState.ACTIVE)

    assert client_as(Role.VIEWER).post(detail(deployment.pk, "retire/")).status_code == 403


def test_deployments_cannot_be_deleted_only_retired(client_as: Client) -> None:
    deployment = DeploymentFactory()

    response = client_as(Role.ADMIN).delete(detail(deployment.pk))

    assert response.status_code == 405
    assert Deployment.objects.filter(pk=deployment.pk).exists()
