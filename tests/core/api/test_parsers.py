"""JSON bodies nested too deeply are a 400 parse_error on every JSON endpoint, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.api.parsers import MAX_DEPTH, too_deep
from apps.core.domain.roles import Role

# Endpoints of several apps that take a JSON body without naming an object first.
ENDPOINTS = [
    "/api/v1/api-keys/",
    "/api/v1/alert-rules/",
    "/api/v1/silences/",
    "/api/v1/jobs/",
    "/api/v1/goals/",
    "/api/v1/deployments/",
]


def nested(levels: int) -> str:
    """An object holding `levels` levels of lists, e.g. {"name": [[[]]]} for 3."""
    return '{"name": ' + "[" * levels + "]" * levels + "}"


@pytest.fixture
def admin_api(client_as: Callable[[Role | None], APIClient]) -> APIClient:
    return client_as(Role.ADMIN)


@pytest.mark.django_db
@pytest.mark.parametrize("levels", [MAX_DEPTH, 1_100, 50_000])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_json_nested_too_deep_is_a_parse_error(admin_api: APIClient, path: str, levels: int) -> None:
    response = admin_api.post(path, data=nested(levels), content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "parse_error"
    assert f"nested more than {MAX_DEPTH} levels" in body["detail"]


@pytest.mark.django_db
def test_json_nested_to_the_limit_reaches_the_serializer(admin_api: APIClient) -> None:
    # The object is one level, so the lists may take the rest.
    response = admin_api.post(
        "/api/v1/api-keys/", data=nested(MAX_DEPTH - 1), content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


@pytest.mark.parametrize(
    ("value", "deep"),
    [
        (1, False),
        ([], False),
        ({"a": [1, 2], "b": {"c": 3}}, False),
        ([[[]]], True),
        ({"a": {"b": {"c": 1}}}, True),
        ([1, 2, [3, [4]]], True),
    ],
)
def test_too_deep_counts_levels_of_lists_and_objects(value: object, deep: bool) -> None:
    assert too_deep(value, limit=2) is deep
