"""POST /api/v1/model-versions/{id}/move/: make a version the next version of another model."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client as PageClient
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from apps.models.models import ModelVersion, RegisteredModel
from apps.serving.domain.states import PlacementState
from tests.models.factories import ModelAliasFactory, ModelVersionFactory, RegisteredModelFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def move_url(version_id: int) -> str:
    return f"/api/v1/model-versions/{version_id}/move/"


@pytest.fixture
def two() -> tuple[ModelVersion, RegisteredModel]:
    """A retrained model's only version, and the model it should be a version of (which has v1)."""
    target = ModelVersionFactory(model__name="llama", number=1).model
    return ModelVersionFactory(model__name="llama-retrained", number=1), target


@pytest.mark.parametrize("ref", ["name", "upper-case name", "id", "id as text"])
def test_an_operator_moves_a_version_naming_the_model_by_name_or_id(
    client_as: Client, two: tuple[ModelVersion, RegisteredModel], ref: str
) -> None:
    version, target = two
    given = {"name": "llama", "upper-case name": "LLAMA", "id": target.pk, "id as text": str(target.pk)}[ref]

    response = client_as(Role.OPERATOR).post(move_url(version.pk), {"model": given}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["model"]["name"], body["number"]) == (version.pk, "llama", 2)
    assert not RegisteredModel.objects.filter(name="llama-retrained").exists()


def test_a_model_named_with_digits_is_found_by_its_name_first(client_as: Client) -> None:
    version = ModelVersionFactory(number=1)
    decoy = RegisteredModelFactory()
    named = RegisteredModelFactory(name=str(decoy.pk))

    response = client_as(Role.OPERATOR).post(move_url(version.pk), {"model": str(decoy.pk)}, format="json")

    assert response.status_code == 200
    assert response.json()["model"]["id"] == named.pk


@pytest.mark.parametrize("given", ["no-such-model", 999_999, "99999999999999999999", True, None, ["llama"]])
def test_a_model_that_is_not_there_or_not_a_name_or_id_is_400_under_model(
    client_as: Client, two: tuple[ModelVersion, RegisteredModel], given: object
) -> None:
    version, _ = two

    response = client_as(Role.OPERATOR).post(move_url(version.pk), {"model": given}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["model"]
    assert ModelVersion.objects.get(pk=version.pk).model.name == "llama-retrained"


def test_a_refusal_is_400_under_the_field_with_the_reason(
    client_as: Client, two: tuple[ModelVersion, RegisteredModel]
) -> None:
    version, target = two
    ModelAliasFactory(version=version, name="staging")

    response = client_as(Role.OPERATOR).post(move_url(version.pk), {"model": target.pk}, format="json")

    assert response.status_code == 400
    assert "Aliases llama-retrained@staging point at" in response.json()["fields"]["version"][0]
    assert ModelVersion.objects.get(pk=version.pk).model_id != target.pk


def test_a_version_in_use_is_400_under_version_naming_what_uses_it(
    client_as: Client, two: tuple[ModelVersion, RegisteredModel]
) -> None:
    version, target = two
    placement = PlacementFactory(version=version, state=PlacementState.LOADED)

    response = client_as(Role.OPERATOR).post(move_url(version.pk), {"model": target.pk}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["version"]
    assert f"active placements {placement.pk}" in response.json()["fields"]["version"][0]
    assert ModelVersion.objects.get(pk=version.pk).model_id != target.pk


def test_a_viewer_may_not_move_a_version(
    client_as: Client, two: tuple[ModelVersion, RegisteredModel]
) -> None:
    version, target = two

    response = client_as(Role.VIEWER).post(move_url(version.pk), {"model": target.pk}, format="json")

    assert response.status_code == 403
    assert ModelVersion.objects.get(pk=version.pk).model_id != target.pk


def test_moving_an_unknown_version_is_404(client_as: Client) -> None:
    target = RegisteredModelFactory()

    response = client_as(Role.OPERATOR).post(move_url(999_999), {"model": target.pk}, format="json")

    assert response.status_code == 404


def test_the_move_and_the_deleted_model_are_in_the_audit_log(
    client_as: Client, two: tuple[ModelVersion, RegisteredModel], django_capture_on_commit_callbacks: Callable
) -> None:
    version, target = two
    left = version.model_id

    with django_capture_on_commit_callbacks(execute=True):
        client_as(Role.OPERATOR).post(move_url(version.pk), {"model": target.pk}, format="json")

    moved = AuditEvent.objects.get(action="move")
    assert (moved.object_id, moved.changes) == (
        str(version.pk),
        {"model": ["llama-retrained", "llama"], "number": [1, 2]},
    )
    assert AuditEvent.objects.filter(action="delete", object_id=str(left)).exists()


def test_the_schema_documents_the_move_with_its_input(client: PageClient, viewer: object) -> None:
    client.force_login(viewer)
    schema = client.get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/model-versions/{id}/move/"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body == "#/components/schemas/VersionMoveInputRequest"
    assert schema["components"]["schemas"]["VersionMoveInputRequest"]["required"] == ["model"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ModelVersion"
    )
