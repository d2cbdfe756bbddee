"""The OpenAPI schema is valid and warning-free, and the docs pages load only local assets."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from apps.core.domain.roles import Role
from tests.procs import ROOT, project_env


def test_schema_generates_valid_and_without_warnings(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            str(tmp_path / "s.yaml"),
        ],
        cwd=ROOT,
        env=project_env(MOC_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.yaml").stat().st_size > 0


@pytest.fixture
def schema(client: Client, viewer: object) -> dict:
    client.force_login(viewer)
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


@pytest.mark.django_db
def test_schema_lists_core_endpoints(schema: dict) -> None:
    assert {"/api/v1/audit-events/", "/api/v1/api-keys/", "/api/v1/task-deliveries/", "/api/v1/me/"} <= set(
        schema["paths"]
    )


@pytest.mark.django_db
def test_schema_declares_the_api_key_bearer_scheme(schema: dict) -> None:
    scheme = schema["components"]["securitySchemes"]["ApiKeyAuth"]

    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


@pytest.mark.django_db
def test_schema_endpoints_accept_an_api_key(schema: dict) -> None:
    security = schema["paths"]["/api/v1/audit-events/"]["get"]["security"]

    assert {"ApiKeyAuth": []} in security


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("component", "field"),
    [("ModelVersion", "parent"), ("RegisteredModel", "owner"), ("ScanRun", "requested_by")],
)
def test_schema_says_which_links_may_be_empty(schema: dict, component: str, field: str) -> None:
    # Lineage and the people behind rows are optional: a discovered model has no owner, a
    # worker's own scan no requester. test_openapi_fuzz.py checks such rows against the schema.
    assert schema["components"]["schemas"][component]["properties"][field]["nullable"] is True


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", html)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_render_for_a_logged_in_user_with_local_assets_only(
    path: str, make_user: Callable[..., object]
) -> None:
    client = Client()
    client.force_login(make_user(Role.VIEWER))

    response = client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    assets = _asset_urls(html)
    assert assets, html
    assert all(url.startswith("/static/") for url in assets), assets
    assert not re.search(r"""src\s*=\s*["'](?:https?:)?//""", html)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_send_anonymous_visitors_to_log_in(path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.django_db
def test_the_schema_is_not_served_to_anonymous_callers(client: Client) -> None:
    assert client.get("/api/schema/").status_code == 401
