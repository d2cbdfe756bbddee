"""A registry scan end to end: the API queues it, a real worker walks the roots, hashes the files
and validates every version it found."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models.domain.states import ScanState, ValidationState
from apps.models.models import ModelFile, ModelVersion, ScanRun
from tests.models.formats import corpus
from tests.models.formats import corpus_gguf_onnx as gguf_onnx
from tests.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _settled() -> bool:
    versions = list(ModelVersion.objects.all())
    files_hashed = not ModelFile.objects.filter(sha256="").exists()
    checked = all(v.validation_state in {ValidationState.VALID, ValidationState.INVALID} for v in versions)
    # The valid ones are validated again once hashed, which records the version's sha256.
    return files_hashed and checked and all(v.sha256 for v in versions if v.validation_state == "valid")


def _settled_and_staying() -> bool:
    """Settled, and still so a moment later: the scan's own validation of a version may arrive
    after the one its last checksum sent, taking it back to validating for a moment."""
    if not _settled():
        return False
    time.sleep(0.5)
    return _settled()


def test_a_scan_posted_to_the_api_is_run_and_validated_by_a_real_worker(
    start_worker: Callable[..., Any],
    client_as: Callable[[Role | None], APIClient],
    tmp_path: Path,
    settings: Any,
) -> None:
    root = tmp_path / "models"
    corpus.write_hf_folder(root / "llama-tiny")
    corpus.write(root, "tiny.gguf", gguf_onnx.tiny_gguf())
    corpus.overlapping_offsets(root)
    link = corpus.escaping_symlink(root, tmp_path / "outside")
    settings.MOC_MODEL_ROOTS = [str(root)]
    start_worker(MOC_MODEL_ROOTS=str(root))

    response = client_as(Role.OPERATOR).post("/api/v1/scans/")

    assert response.status_code == 202
    scan_id = response.json()["id"]
    wait_until(
        lambda: ScanRun.objects.get(pk=scan_id).state not in {ScanState.QUEUED, ScanState.RUNNING},
        60,
        "the scan to finish",
        0.2,
    )
    scan = ScanRun.objects.get(pk=scan_id)
    assert scan.state == ScanState.SUCCEEDED, scan.errors
    assert (scan.new, scan.failed, scan.progress) == (ModelFile.objects.count(), 2, 1.0)
    assert {error["path"] for error in scan.errors} == {str(link), str(root / "overlap.safetensors")}

    wait_until(_settled_and_staying, 60, "every file hashed and every version validated", 0.2)

    states = {v.model.name: v.validation_state for v in ModelVersion.objects.select_related("model")}
    assert states == {"llama-tiny": "valid", "tiny": "valid", "overlap": "invalid"}
    gguf = ModelVersion.objects.get(model__name="tiny")
    assert gguf.sha256 == hashlib.sha256((root / "tiny.gguf").read_bytes()).hexdigest()
    assert gguf.estimated_vram_bytes == gguf.vram_estimate["total"] > 0
    broken = ModelVersion.objects.get(model__name="overlap")
    assert "offsets" in broken.validation_error


def test_a_fresh_installs_first_worker_scans_the_roots_by_itself(
    start_worker: Callable[..., Any], tmp_path: Path, settings: Any
) -> None:
    root = tmp_path / "models"
    corpus.write_hf_folder(root / "llama-tiny")
    settings.MOC_MODEL_ROOTS = [str(root)]

    start_worker(MOC_MODEL_ROOTS=str(root), MOC_REGISTRY_SCAN_ON_START="true")

    wait_until(
        lambda: ModelVersion.objects.filter(model__name="llama-tiny").exists(),
        60,
        "the worker's first scan to register the model",
        0.2,
    )
    assert ScanRun.objects.count() == 1
    assert ScanRun.objects.get().requested_by is None
