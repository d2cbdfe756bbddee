from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models.domain.formats import FileFormat, ModelFormat
from apps.models.domain.states import ValidationState
from tests.models.factories import (
    ModelAliasFactory,
    ModelFileFactory,
    ModelVersionFactory,
    RegisteredModelFactory,
)

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def test_versions_list_shows_the_model_and_validation_state(client_as: Client) -> None:
    version = ModelVersionFactory(model=RegisteredModelFactory(name="llama"), number=3)
    ModelFileFactory(version=version)

    response = client_as(Role.VIEWER).get("/api/v1/model-versions/")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["model"]["name"] == "llama"
    assert (row["number"], row["validation_state"], row["file_count"]) == (3, "pending", 1)


def test_versions_filter_by_model_and_validation_state(client_as: Client) -> None:
    wanted = ModelVersionFactory(validation_state=ValidationState.VALID)
    ModelVersionFactory(model=wanted.model, validation_state=ValidationState.INVALID)
    ModelVersionFactory(validation_state=ValidationState.VALID)

    response = client_as(Role.VIEWER).get(
        "/api/v1/model-versions/", {"model": wanted.model_id, "validation_state": "valid"}
    )

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_versions_filter_by_format(client_as: Client) -> None:
    gguf = ModelVersionFactory(format=ModelFormat.GGUF)
    ModelVersionFactory(format=ModelFormat.ONNX)

    response = client_as(Role.VIEWER).get("/api/v1/model-versions/", {"model_format": "gguf"})

    assert [row["id"] for row in response.json()["results"]] == [gguf.pk]


def test_version_retrieve_shows_its_lineage_parent(client_as: Client) -> None:
    parent = ModelVersionFactory()
    child = ModelVersionFactory(parent=parent)

    response = client_as(Role.VIEWER).get(f"/api/v1/model-versions/{child.pk}/")

    assert response.json()["parent"] == parent.pk


def test_version_retrieve_of_an_unknown_version_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get("/api/v1/model-versions/999999/").status_code == 404


def test_versions_are_read_only_even_for_an_operator(client_as: Client) -> None:
    model = RegisteredModelFactory()

    response = client_as(Role.OPERATOR).post(
        "/api/v1/model-versions/", {"model": model.pk, "number": 1}, format="json"
    )

    assert response.status_code == 405


def test_files_filter_by_version(client_as: Client) -> None:
    wanted = ModelFileFactory(path="config.json", format=FileFormat.CONFIG)
    ModelFileFactory()

    response = client_as(Role.VIEWER).get("/api/v1/model-files/", {"version": wanted.version_id})

    assert [(row["path"], row["format"]) for row in response.json()["results"]] == [("config.json", "config")]


def test_files_filter_by_file_format(client_as: Client) -> None:
    config = ModelFileFactory(path="config.json", format=FileFormat.CONFIG)
    ModelFileFactory(format=FileFormat.SAFETENSORS)

    response = client_as(Role.VIEWER).get("/api/v1/model-files/", {"file_format": "config"})

    assert [row["id"] for row in response.json()["results"]] == [config.pk]


def test_file_retrieve_returns_its_checksum(client_as: Client) -> None:
    file = ModelFileFactory(sha256="a" * 64)

    response = client_as(Role.VIEWER).get(f"/api/v1/model-files/{file.pk}/")

    assert response.json()["sha256"] == "a" * 64


def test_aliases_filter_by_name(client_as: Client) -> None:
    production = ModelAliasFactory(name="production")
    ModelAliasFactory(name="staging")

    response = client_as(Role.VIEWER).get("/api/v1/model-aliases/", {"name": "production"})

    [row] = response.json()["results"]
    assert (row["id"], row["version"]["number"]) == (production.pk, production.version.number)


def test_alias_retrieve_of_an_unknown_alias_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get("/api/v1/model-aliases/999999/").status_code == 404
