from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.states import ReleaseState
from apps.deployments.models import Release
from apps.models.domain.states import ValidationState
from tests.deployments.factories import DeploymentFactory, ReleaseFactory, ValidVersionFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/releases/"
Client = Callable[[Role | None], APIClient]


def detail(pk: int, suffix: str = "") -> str:
    return f"{URL}{pk}/{suffix}"


def test_list_shows_releases_to_a_viewer(client_as: Client) -> None:
    release = ReleaseFactory(deployment__name="chat")

    response = client_as(Role.VIEWER).get(URL)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["id"], row["state"], row["deployment"]["name"]) == (release.pk, "pending", "chat")
    assert row["model_version"]["id"] == release.model_version_id


def test_list_filters_by_deployment_name(client_as: Client) -> None:
    wanted = ReleaseFactory(deployment__name="chat")
    ReleaseFactory(deployment__name="embed")

    response = client_as(Role.VIEWER).get(URL, {"deployment_name": "chat"})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_retrieve_of_an_unknown_release_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(detail(999_999)).status_code == 404


def test_operator_asks_for_a_release_of_a_valid_version(client_as: Client) -> None:
    deployment = DeploymentFactory()
    version = ValidVersionFactory()

    response = client_as(Role.OPERATOR).post(
        URL,
        {"deployment": deployment.pk, "model_version": version.pk, "strategy": "canary", "canary_percent": 5},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["state"], body["strategy"], body["canary_percent"]) == ("pending", "canary", 5)


def test_viewer_cannot_ask_for_a_release(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(
        URL, {"deployment": DeploymentFactory().pk, "model_version": ValidVersionFactory().pk}, format="json"
    )

    assert response.status_code == 403
    assert not Release.objects.exists()


def test_a_release_of_an_unvalidated_version_is_a_400_on_model_version(client_as: Client) -> None:
    version = ModelVersionFactory(validation_state=ValidationState.PENDING)

    response = client_as(Role.OPERATOR).post(
        URL, {"deployment": DeploymentFactory().pk, "model_version": version.pk}, format="json"
    )

    assert response.status_code == 400
    assert "passed validation" in response.json()["fields"]["model_version"][0]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model_version": "valid"}, "deployment"),
        ({"deployment": 999_999, "model_version": "valid"}, "deployment"),
        ({"deployment": "existing"}, "model_version"),
        ({"deployment": "existing", "model_version": "valid", "strategy": "yolo"}, "strategy"),
        (
            {"deployment": "existing", "model_version": "valid", "strategy": "canary", "canary_percent": 100},
            "canary_percent",
        ),
    ],
)
def test_create_names_the_bad_field(client_as: Client, payload: dict[str, Any], field: str) -> None:
    stand_ins = {"existing": DeploymentFactory().pk, "valid": ValidVersionFactory().pk}
    payload = {key: stand_ins.get(value, value) for key, value in payload.items()}

    response = client_as(Role.OPERATOR).post(URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_operator_cancels_a_pending_release(client_as: Client) -> None:
    release = ReleaseFactory()

    response = client_as(Role.OPERATOR).post(detail(release.pk, "cancel/"))

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"


def test_cancel_of_a_release_rolling_out_is_a_409(client_as: Client) -> None:
    release = ReleaseFactory(state=ReleaseState.ROLLING_OUT)

    assert client_as(Role.OPERATOR).post(detail(release.pk, "cancel/")).status_code == 409


def test_viewer_cannot_cancel_a_release(client_as: Client) -> None:
    release = ReleaseFactory()

    assert client_as(Role.VIEWER).post(detail(release.pk, "cancel/")).status_code == 403
