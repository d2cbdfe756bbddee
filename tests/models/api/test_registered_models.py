from collections.abc import Callable

import pytest
from django.contrib.contenttypes.models import ContentType
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from apps.models.models import RegisteredModel
from tests.models.factories import ModelAliasFactory, ModelVersionFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/registered-models/"
Client = Callable[[Role | None], APIClient]


def detail(pk: int, suffix: str = "") -> str:
    return f"{URL}{pk}/{suffix}"


def test_list_shows_models_with_their_versions_and_aliases_for_a_viewer(client_as: Client) -> None:
    alias = ModelAliasFactory(
        version=ModelVersionFactory(model=RegisteredModelFactory(name="llama"), number=2)
    )

    response = client_as(Role.VIEWER).get(URL)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["name"] == "llama"
    assert row["version_count"] == 1
    assert [v["number"] for v in row["versions"]] == [2]
    assert row["aliases"] == [{"name": "production", "version_id": alias.version_id, "version_number": 2}]


def test_list_refuses_anonymous_callers(client_as: Client) -> None:
    assert client_as(None).get(URL).status_code in {401, 403}


def test_list_filters_by_exact_tag(client_as: Client) -> None:
    RegisteredModelFactory(name="chatty", tags=["llm", "chat"])
    RegisteredModelFactory(name="vision", tags=["llm-vision"])

    response = client_as(Role.VIEWER).get(URL, {"tag": "llm"})

    assert [row["name"] for row in response.json()["results"]] == ["chatty"]


def test_list_searches_names_and_tags_with_q(client_as: Client) -> None:
    RegisteredModelFactory(name="llama", tags=[])
    RegisteredModelFactory(name="other", tags=["llama-family"])
    RegisteredModelFactory(name="bert", tags=["encoder"])

    response = client_as(Role.VIEWER).get(URL, {"q": "llama"})

    assert sorted(row["name"] for row in response.json()["results"]) == ["llama", "other"]


def test_list_filters_archived(client_as: Client) -> None:
    RegisteredModelFactory(name="old", archived=True)
    RegisteredModelFactory(name="new")

    response = client_as(Role.VIEWER).get(URL, {"archived": "false"})

    assert [row["name"] for row in response.json()["results"]] == ["new"]


def test_retrieve_returns_one_model(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama", description="chat model")

    response = client_as(Role.VIEWER).get(detail(model.pk))

    assert response.status_code == 200
    assert response.json()["description"] == "chat model"


def test_retrieve_of_an_unknown_model_is_404_with_the_error_body(client_as: Client) -> None:
    response = client_as(Role.VIEWER).get(detail(999_999))

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_create_by_an_operator_registers_the_model_as_theirs(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(URL, {"name": "llama-3.1-8b", "tags": ["LLM"]}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["tags"], body["versions"]) == ("llama-3.1-8b", ["llm"], [])
    assert body["owner"]["username"].startswith("operator")


def test_create_by_a_viewer_is_forbidden(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(URL, {"name": "llama"}, format="json")

    assert response.status_code == 403
    assert not RegisteredModel.objects.exists()


def test_create_with_an_operator_api_key_works(key_client: Callable[..., APIClient]) -> None:
    response = key_client(Role.OPERATOR).post(URL, {"name": "llama"}, format="json")

    assert response.status_code == 201


def test_create_with_an_invalid_name_is_400_naming_the_field(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(URL, {"name": "has spaces/and slash"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert "name" in response.json()["fields"]


def test_create_without_a_name_is_400_naming_the_field(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(URL, {"description": "x"}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()["fields"]


def test_create_with_tags_of_the_wrong_type_is_400_naming_tags(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(URL, {"name": "ok", "tags": "llm"}, format="json")

    assert response.status_code == 400
    assert "tags" in response.json()["fields"]


def test_create_with_a_duplicate_name_is_400(client_as: Client) -> None:
    RegisteredModelFactory(name="llama")

    response = client_as(Role.OPERATOR).post(URL, {"name": "Llama"}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()["fields"]


def test_create_is_recorded_in_the_audit_log(
    client_as: Client, django_capture_on_commit_callbacks: Callable
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as(Role.OPERATOR).post(URL, {"name": "llama"}, format="json")

    event = AuditEvent.objects.get(
        action="create", content_type=ContentType.objects.get_for_model(RegisteredModel)
    )
    assert event.object_id == str(response.json()["id"])
    assert event.source == AuditEvent.Source.API


def test_patch_by_an_operator_changes_the_description(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama")

    response = client_as(Role.OPERATOR).patch(detail(model.pk), {"description": "updated"}, format="json")

    assert response.status_code == 200
    assert response.json()["description"] == "updated"
    assert response.json()["name"] == "llama"


def test_put_replaces_the_model_so_fields_left_out_are_cleared(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama", description="old", tags=["llm"])

    response = client_as(Role.OPERATOR).put(detail(model.pk), {"name": "llama-2"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["tags"]) == ("llama-2", "", [])


def test_put_without_a_name_is_400_naming_the_field(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama")

    response = client_as(Role.OPERATOR).put(detail(model.pk), {"description": "x"}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()["fields"]


def test_patch_by_a_viewer_is_forbidden(client_as: Client) -> None:
    model = RegisteredModelFactory(description="kept")

    response = client_as(Role.VIEWER).patch(detail(model.pk), {"description": "changed"}, format="json")

    assert response.status_code == 403
    model.refresh_from_db()
    assert model.description == "kept"


def test_patch_to_another_models_name_is_400(client_as: Client) -> None:
    RegisteredModelFactory(name="taken")
    model = RegisteredModelFactory(name="mine")

    response = client_as(Role.OPERATOR).patch(detail(model.pk), {"name": "TAKEN"}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()["fields"]


def test_patch_of_an_unknown_model_is_404(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).patch(detail(999_999), {"description": "x"}, format="json")

    assert response.status_code == 404


def test_archive_by_an_operator_archives_the_model(client_as: Client) -> None:
    model = RegisteredModelFactory()

    response = client_as(Role.OPERATOR).post(detail(model.pk, "archive/"))

    assert response.status_code == 200
    assert response.json()["archived"] is True
    assert response.json()["archived_at"] is not None


def test_archive_by_a_viewer_is_forbidden(client_as: Client) -> None:
    model = RegisteredModelFactory()

    response = client_as(Role.VIEWER).post(detail(model.pk, "archive/"))

    assert response.status_code == 403
    model.refresh_from_db()
    assert not model.archived


def test_archive_of_an_unknown_model_is_404(client_as: Client) -> None:
    assert client_as(Role.OPERATOR).post(detail(999_999, "archive/")).status_code == 404


def test_archive_is_recorded_in_the_audit_log(
    client_as: Client, django_capture_on_commit_callbacks: Callable
) -> None:
    model = RegisteredModelFactory()

    with django_capture_on_commit_callbacks(execute=True):
        client_as(Role.OPERATOR).post(detail(model.pk, "archive/"))

    event = AuditEvent.objects.get(action="archive")
    assert (event.object_id, event.changes) == (str(model.pk), {"archived": [False, True]})


def test_restore_by_an_operator_unarchives_the_model(client_as: Client) -> None:
    model = RegisteredModelFactory(archived=True)

    response = client_as(Role.OPERATOR).post(detail(model.pk, "restore/"))

    assert response.status_code == 200
    assert response.json()["archived"] is False


def test_delete_is_refused_with_405_and_points_at_archive(client_as: Client) -> None:
    model = RegisteredModelFactory()

    response = client_as(Role.OPERATOR).delete(detail(model.pk))

    assert response.status_code == 405
    assert "archive" in response.json()["detail"]
    assert RegisteredModel.objects.filter(pk=model.pk).exists()
