"""The alerts API's OpenAPI document: every write says what it answers when refused."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def paths(client: Client, viewer: object) -> dict:
    client.force_login(viewer)
    return client.get("/api/schema/", {"format": "json"}).json()["paths"]


def test_silence_changes_have_summaries_and_their_refusals(paths: dict) -> None:
    silence = paths["/api/v1/silences/{id}/"]

    assert silence["put"]["summary"]
    assert silence["patch"]["summary"]
    assert {"200", "400", "403", "409"} <= set(silence["patch"]["responses"])


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/v1/alerts/{id}/acknowledge/", "post", {"200", "400", "403", "409"}),
        ("/api/v1/alerts/{id}/unacknowledge/", "post", {"200", "403", "409"}),
        ("/api/v1/silences/{id}/expire/", "post", {"200", "403", "409"}),
        ("/api/v1/silences/", "post", {"201", "400", "403"}),
        ("/api/v1/alert-rules/", "post", {"201", "400", "403"}),
        ("/api/v1/notification-channels/{id}/test/", "post", {"201", "403"}),
    ],
)
def test_actions_document_their_refusals_with_the_error_body(
    paths: dict, path: str, method: str, codes: set[str]
) -> None:
    responses = paths[path][method]["responses"]

    assert codes <= set(responses)
    refused = [responses[c] for c in codes if c[0] == "4"]
    assert all(r["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody") for r in refused)


def test_summaries_read_as_english(paths: dict) -> None:
    assert paths["/api/v1/alert-rules/"]["post"]["summary"] == "Create an alert rule"
    assert paths["/api/v1/inhibit-rules/"]["post"]["summary"] == "Create an inhibit rule"
    preview = paths["/api/v1/notification-channels/{id}/preview/"]["get"]
    assert "Alertmanager webhook (version 4)" in preview["summary"]
