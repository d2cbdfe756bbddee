"""Setting, moving and clearing aliases through the API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models.domain.states import ValidationState
from apps.models.models import ModelAlias
from tests.models.factories import ModelAliasFactory, ModelVersionFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def aliases_url(model_id: int, name: str = "") -> str:
    return f"/api/v1/registered-models/{model_id}/aliases/" + (f"{name}/" if name else "")


def test_setting_a_new_alias_creates_it_with_201(client_as: Client) -> None:
    version = ModelVersionFactory()

    response = client_as(Role.OPERATOR).post(
        aliases_url(version.model_id), {"name": "production", "version": version.pk}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["version"]["id"], body["model"]["id"]) == (
        "production",
        version.pk,
        version.model_id,
    )


def test_setting_an_existing_alias_moves_it_with_200_and_keeps_one_row(client_as: Client) -> None:
    alias = ModelAliasFactory(name="production")
    newer = ModelVersionFactory(model=alias.model)

    response = client_as(Role.OPERATOR).post(
        aliases_url(alias.model_id), {"name": "production", "version": newer.pk}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["version"]["id"] == newer.pk
    assert list(ModelAlias.objects.values_list("pk", "version_id")) == [(alias.pk, newer.pk)]


def test_the_same_alias_name_may_exist_once_per_model(client_as: Client) -> None:
    ModelAliasFactory(name="production")
    other = ModelVersionFactory()

    response = client_as(Role.OPERATOR).post(
        aliases_url(other.model_id), {"name": "production", "version": other.pk}, format="json"
    )

    assert response.status_code == 201
    assert ModelAlias.objects.filter(name="production").count() == 2


def test_an_alias_cannot_point_at_another_models_version(client_as: Client) -> None:
    model = RegisteredModelFactory()
    foreign = ModelVersionFactory()

    response = client_as(Role.OPERATOR).post(
        aliases_url(model.pk), {"name": "production", "version": foreign.pk}, format="json"
    )

    assert response.status_code == 400
    assert "another model" in response.json()["fields"]["version"][0]
    assert not ModelAlias.objects.exists()


def test_an_alias_cannot_point_at_an_invalid_version_and_the_refusal_says_why(client_as: Client) -> None:
    version = ModelVersionFactory(
        validation_state=ValidationState.INVALID, validation_error="offsets_contiguous: a gap"
    )

    response = client_as(Role.OPERATOR).post(
        aliases_url(version.model_id), {"name": "production", "version": version.pk}, format="json"
    )

    assert response.status_code == 400
    assert "offsets_contiguous: a gap" in response.json()["fields"]["version"][0]


def test_an_alias_cannot_point_at_an_archived_version(client_as: Client) -> None:
    version = ModelVersionFactory(archived=True)

    response = client_as(Role.OPERATOR).post(
        aliases_url(version.model_id), {"name": "staging", "version": version.pk}, format="json"
    )

    assert response.status_code == 400
    assert "archived" in response.json()["fields"]["version"][0]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Prod uction", "version": None}, "name"),
        ({"name": "production"}, "version"),
        ({"name": "production", "version": 999999}, "version"),
        ({"version": None}, "name"),
    ],
)
def test_a_bad_alias_request_is_400_and_names_the_field(
    client_as: Client, payload: dict[str, object], field: str
) -> None:
    version = ModelVersionFactory()
    if payload.get("version", 0) is None:
        payload = {**payload, "version": version.pk}

    response = client_as(Role.OPERATOR).post(aliases_url(version.model_id), payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_clearing_an_alias_deletes_it_with_204_and_a_second_clear_is_404(client_as: Client) -> None:
    alias = ModelAliasFactory(name="staging")
    client = client_as(Role.OPERATOR)

    first = client.delete(aliases_url(alias.model_id, "staging"))
    second = client.delete(aliases_url(alias.model_id, "staging"))

    assert first.status_code == 204
    assert second.status_code == 404
    assert "staging" in second.json()["detail"]
    assert not ModelAlias.objects.exists()


def test_clearing_touches_only_that_models_alias(client_as: Client) -> None:
    mine = ModelAliasFactory(name="staging")
    theirs = ModelAliasFactory(name="staging")

    client_as(Role.OPERATOR).delete(aliases_url(mine.model_id, "staging"))

    assert list(ModelAlias.objects.values_list("pk", flat=True)) == [theirs.pk]


def test_a_viewer_can_neither_set_nor_clear_an_alias(client_as: Client) -> None:
    alias = ModelAliasFactory(name="staging")
    client = client_as(Role.VIEWER)

    set_response = client.post(
        aliases_url(alias.model_id), {"name": "production", "version": alias.version_id}, format="json"
    )
    clear_response = client.delete(aliases_url(alias.model_id, "staging"))

    assert (set_response.status_code, clear_response.status_code) == (403, 403)
    assert list(ModelAlias.objects.values_list("name", flat=True)) == ["staging"]


def test_the_model_shows_its_aliases_after_a_move(client_as: Client) -> None:
    alias = ModelAliasFactory(name="production")
    newer = ModelVersionFactory(model=alias.model, number=7)
    client = client_as(Role.OPERATOR)
    client.post(aliases_url(alias.model_id), {"name": "production", "version": newer.pk}, format="json")

    body = client.get(f"/api/v1/registered-models/{alias.model_id}/").json()

    assert body["aliases"] == [{"name": "production", "version_id": newer.pk, "version_number": 7}]
