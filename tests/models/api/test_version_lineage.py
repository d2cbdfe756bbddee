"""Operators set a version's lineage and archive versions; nothing is deleted."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models.models import ModelVersion
from tests.models.factories import ModelAliasFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def test_an_operator_records_what_a_version_was_derived_from(client_as: Client) -> None:
    base = ModelVersionFactory(model__name="llama")
    tuned = ModelVersionFactory(model__name="llama-support")

    response = client_as(Role.OPERATOR).patch(
        f"/api/v1/model-versions/{tuned.pk}/", {"parent": base.pk}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["parent"] == base.pk
    assert list(base.children.all()) == [tuned]


def test_lineage_that_would_loop_is_refused_naming_the_parent(client_as: Client) -> None:
    grandparent = ModelVersionFactory()
    child = ModelVersionFactory(parent=grandparent)

    response = client_as(Role.OPERATOR).patch(
        f"/api/v1/model-versions/{grandparent.pk}/", {"parent": child.pk}, format="json"
    )

    assert response.status_code == 400
    assert "loop" in response.json()["fields"]["parent"][0]
    assert ModelVersion.objects.get(pk=grandparent.pk).parent is None


def test_a_viewer_cannot_change_lineage(client_as: Client) -> None:
    version = ModelVersionFactory()

    response = client_as(Role.VIEWER).patch(
        f"/api/v1/model-versions/{version.pk}/", {"parent": None}, format="json"
    )

    assert response.status_code == 403


def test_a_version_is_archived_and_restored_not_deleted(client_as: Client) -> None:
    version = ModelVersionFactory()
    client = client_as(Role.OPERATOR)

    archived = client.post(f"/api/v1/model-versions/{version.pk}/archive/")
    deleted = client.delete(f"/api/v1/model-versions/{version.pk}/")
    restored = client.post(f"/api/v1/model-versions/{version.pk}/restore/")

    assert (archived.status_code, archived.json()["archived"]) == (200, True)
    assert deleted.status_code == 405
    assert (restored.status_code, restored.json()["archived"]) == (200, False)


def test_a_version_an_alias_points_at_is_not_archived(client_as: Client) -> None:
    alias = ModelAliasFactory(name="production")

    response = client_as(Role.OPERATOR).post(f"/api/v1/model-versions/{alias.version.pk}/archive/")

    assert response.status_code == 400
    assert "production" in response.json()["fields"]["version"][0]
    assert ModelVersion.objects.get(pk=alias.version.pk).archived is False
