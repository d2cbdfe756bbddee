from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_schema_documents_releases_actions_timeline_and_the_verification_suite(
    client: Client, viewer: object
) -> None:
    client.force_login(viewer)

    schema = client.get("/api/schema/", {"format": "json"}).json()

    paths = schema["paths"]
    for action in ["promote", "pause", "resume", "abort", "rollback", "events"]:
        assert f"/api/v1/releases/{{id}}/{action}/" in paths
    assert "/api/v1/verification-checks/" in paths
    assert "/api/v1/deployments/{ref}/" in paths
    abort = paths["/api/v1/releases/{id}/abort/"]["post"]
    assert {"200", "409"} <= set(abort["responses"])
    create = schema["components"]["schemas"]["ReleaseCreateInputRequest"]["properties"]
    assert {"steps", "override_gate", "strategy"} <= set(create)
    deployment = schema["components"]["schemas"]["Deployment"]["properties"]
    assert {"split", "open_release", "golden_set", "slo_p99_ms", "environment"} <= set(deployment)
