"""The scan and validate commands over the API, and how versions show what scans found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core import dispatch
from apps.core.domain.roles import Role
from apps.models.domain.states import ScanState
from apps.models.messages import REGISTRY_CHECKSUM, REGISTRY_SCAN, REGISTRY_VALIDATE
from apps.models.models import ScanRun
from tests.models.factories import ModelFileFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]
SCANS = "/api/v1/scans/"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    messages: dict[str, list[Any]] = {"scan": [], "validate": []}
    keys = {REGISTRY_SCAN: "scan", REGISTRY_CHECKSUM: "checksum", REGISTRY_VALIDATE: "validate"}

    def send(name: str, *, args: Any = (), **options: Any) -> None:
        args = list(args)
        messages[keys[name]].append(args if keys[name] == "scan" else args[0])

    monkeypatch.setattr(dispatch, "send", send)
    return messages


def test_an_operator_starts_a_scan_and_gets_202_with_the_queued_scan(
    client_as: Client, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.MOC_MODEL_ROOTS = ["/srv/models"]

    with django_capture_on_commit_callbacks(execute=True):
        response = client_as(Role.OPERATOR).post(SCANS)

    assert response.status_code == 202
    body = response.json()
    assert (body["state"], body["roots"], body["progress"]) == ("queued", ["/srv/models"], 0.0)
    assert body["requested_by"]["username"].startswith("operator")
    assert sent["scan"] == [[body["id"]]]


def test_a_second_scan_while_one_is_queued_is_409_and_names_the_first(
    client_as: Client, sent: dict[str, list[Any]]
) -> None:
    client = client_as(Role.OPERATOR)
    first = client.post(SCANS).json()

    response = client.post(SCANS)

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert f"Scan {first['id']}" in response.json()["detail"]


def test_a_viewer_cannot_start_a_scan(client_as: Client) -> None:
    assert client_as(Role.VIEWER).post(SCANS).status_code == 403
    assert client_as(None).post(SCANS).status_code in {401, 403}
    assert not ScanRun.objects.exists()


def test_a_viewer_follows_a_scans_progress_and_summary(client_as: Client) -> None:
    scan = ScanRun.objects.create(
        state=ScanState.RUNNING,
        roots=["/srv/models"],
        progress=0.5,
        files_seen=10,
        new=4,
        unchanged=6,
        failed=1,
        errors=[{"path": "/srv/models/x.gguf", "error": "gguf_counts: too many tensors"}],
    )

    listed = client_as(Role.VIEWER).get(SCANS, {"state": "running"})
    detail = client_as(Role.VIEWER).get(f"{SCANS}{scan.pk}/")

    assert [row["id"] for row in listed.json()["results"]] == [scan.pk]
    body = detail.json()
    assert (body["progress"], body["new"], body["unchanged"], body["failed"]) == (0.5, 4, 6, 1)
    assert body["errors"][0]["error"].startswith("gguf_counts")


def test_an_operator_queues_a_validation_and_gets_202(
    client_as: Client, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Any
) -> None:
    version = ModelVersionFactory()

    with django_capture_on_commit_callbacks(execute=True):
        response = client_as(Role.OPERATOR).post(f"/api/v1/model-versions/{version.pk}/validate/")

    assert response.status_code == 202
    assert response.json()["id"] == version.pk
    assert sent["validate"] == [version.pk]


def test_a_viewer_cannot_queue_a_validation(client_as: Client, sent: dict[str, list[Any]]) -> None:
    version = ModelVersionFactory()

    response = client_as(Role.VIEWER).post(f"/api/v1/model-versions/{version.pk}/validate/")

    assert response.status_code == 403
    assert sent["validate"] == []


def test_validating_an_unknown_version_is_404(client_as: Client) -> None:
    assert client_as(Role.OPERATOR).post("/api/v1/model-versions/999999/validate/").status_code == 404


def test_a_version_shows_its_report_vram_parts_kind_parent_and_files(client_as: Client) -> None:
    parent = ModelVersionFactory()
    report = [{"check": "header_size", "status": "pass", "detail": "1 KiB", "file": "model.safetensors"}]
    estimate = {
        "weights": 100,
        "overhead": 10,
        "kv_cache": 5,
        "total": 115,
        "context": 4096,
        "batch": 1,
        "basis": "KV cache = ...",
    }
    version = ModelVersionFactory(
        parent=parent,
        kind="causal-lm",
        validation_report=report,
        vram_estimate=estimate,
        estimated_vram_bytes=115,
    )
    ModelFileFactory(version=version, path="model.safetensors", sha256="ab" * 32)

    body = client_as(Role.VIEWER).get(f"/api/v1/model-versions/{version.pk}/").json()

    assert (body["kind"], body["parent"], body["estimated_vram_bytes"]) == ("causal-lm", parent.pk, 115)
    assert body["parent_version"] == {
        "id": parent.pk,
        "model": {"id": parent.model_id, "name": parent.model.name, "archived": False},
        "number": parent.number,
    }
    assert body["validation_report"] == [{**report[0], "file_display": "model.safetensors"}]
    assert body["vram_estimate"] == estimate
    assert body["files"] == [
        {
            "id": version.files.get().pk,
            "path": "model.safetensors",
            "path_display": "model.safetensors",
            "format": "safetensors",
            "size_bytes": 4_000_000_000,
            "sha256": "ab" * 32,
        }
    ]


def test_a_version_not_estimated_yet_shows_a_null_vram_estimate(client_as: Client) -> None:
    version = ModelVersionFactory()

    body = client_as(Role.VIEWER).get(f"/api/v1/model-versions/{version.pk}/").json()

    assert (body["vram_estimate"], body["validation_report"], body["parent_version"]) == (None, [], None)


def test_the_scans_list_costs_the_same_queries_for_one_scan_or_many(
    client_as: Client, django_assert_max_num_queries: Any
) -> None:
    client = client_as(Role.VIEWER)
    for _ in range(5):
        ScanRun.objects.create(state=ScanState.SUCCEEDED, requested_by=None)

    with django_assert_max_num_queries(8):
        assert client.get(SCANS).status_code == 200
