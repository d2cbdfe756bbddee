"""Scans, checksums and validation runs against real files in a tmp model root (tasks not run)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.core import dispatch, redis_clients
from apps.core.domain.errors import Conflict
from apps.models import scanning, tasks
from apps.models.domain.formats import FileFormat, ModelFormat
from apps.models.domain.states import ScanState, ValidationState
from apps.models.messages import REGISTRY_CHECKSUM, REGISTRY_SCAN, REGISTRY_VALIDATE
from apps.models.models import ModelFile, ModelVersion, RegisteredModel, ScanRun
from tests.models.factories import RegisteredModelFactory
from tests.models.formats import corpus
from tests.models.formats import corpus_gguf_onnx as gguf_onnx
from tests.models.scans import scan_now, validated, version_at

pytestmark = pytest.mark.django_db

Commits = Callable[..., Any]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What the services sent to the broker, by task, without sending it."""
    messages: dict[str, list[Any]] = {"scan": [], "checksum": [], "validate": []}
    keys = {REGISTRY_SCAN: "scan", REGISTRY_CHECKSUM: "checksum", REGISTRY_VALIDATE: "validate"}

    def send(name: str, *, args: Any = (), **options: Any) -> None:
        args = list(args)
        messages[keys[name]].append(args if keys[name] == "scan" else args[0])

    monkeypatch.setattr(dispatch, "send", send)
    return messages


def counts(scan: ScanRun) -> dict[str, int]:
    return {k: getattr(scan, k) for k in ("new", "changed", "unchanged", "removed", "failed")}


def test_a_first_scan_registers_every_version_with_its_files_and_summary(root: Path) -> None:
    names = corpus.write_hf_folder(root / "llama-tiny")
    corpus.write(root, "tiny.gguf", gguf_onnx.tiny_gguf())

    scan = scan_now()

    assert scan.state == ScanState.SUCCEEDED
    assert counts(scan) == {"new": len(names) + 1, "changed": 0, "unchanged": 0, "removed": 0, "failed": 0}
    assert (scan.progress, scan.files_seen) == (1.0, len(names) + 1)
    hf = version_at(root / "llama-tiny")
    assert (hf.model.name, hf.number, hf.format, hf.kind) == ("llama-tiny", 1, ModelFormat.HF, "causal-lm")
    assert sorted(hf.files.values_list("path", flat=True)) == names
    assert hf.params_count == corpus.LLAMA_PARAMS
    assert hf.metadata["num_hidden_layers"] == 2
    assert hf.vram_estimate["kv_cache"] > 0
    assert hf.estimated_vram_bytes == hf.vram_estimate["total"]
    assert hf.size_bytes == sum((root / "llama-tiny" / n).stat().st_size for n in names)
    gguf = version_at(root / "tiny.gguf")
    assert (gguf.model.name, gguf.format, gguf.kind) == ("tiny", ModelFormat.GGUF, "causal-lm")
    assert gguf.metadata["quantization"]
    assert gguf.files.get().header["format"] == FileFormat.GGUF


def test_a_warm_rescan_reads_no_header_and_counts_everything_unchanged(
    root: Path, reads: list[Path], django_assert_max_num_queries: Any
) -> None:
    corpus.write_hf_folder(root / "a")
    corpus.write_safetensors(root, "b.safetensors")
    first = scan_now()
    reads.clear()

    with django_assert_max_num_queries(20):
        second = scan_now()

    assert reads == []
    assert counts(second) == {"new": 0, "changed": 0, "unchanged": first.new, "removed": 0, "failed": 0}


def test_a_changed_file_is_read_again_and_its_version_updated(root: Path, reads: list[Path]) -> None:
    path = corpus.write_safetensors(root, "b.safetensors")
    scan_now()
    corpus.write_safetensors(root, "b.safetensors", {"w": ("F32", [10, 10])})
    reads.clear()

    scan = scan_now()

    assert counts(scan) == {"new": 0, "changed": 1, "unchanged": 0, "removed": 0, "failed": 0}
    assert reads == [path]
    version = version_at(path)
    assert version.params_count == 100
    assert version.files.get().sha256 == ""


def test_a_deleted_file_loses_its_row_and_its_version_is_revalidated(
    root: Path, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Commits
) -> None:
    corpus.write_hf_folder(root / "a")
    scan_now()
    version = version_at(root / "a")
    (root / "a" / "generation_config.json").unlink()

    with django_capture_on_commit_callbacks(execute=True):
        scan = scan_now()

    assert scan.removed == 1
    assert not version.files.filter(path="generation_config.json").exists()
    assert sent["validate"] == [version.pk]


def test_a_version_whose_folder_vanished_keeps_its_row_but_no_files(root: Path) -> None:
    corpus.write_hf_folder(root / "a")
    first = scan_now()
    shutil.rmtree(root / "a")

    scan = scan_now()

    version = version_at(root / "a")
    assert scan.removed == first.new
    assert (version.files.count(), version.size_bytes) == (0, 0)
    assert (version.vram_estimate, version.estimated_vram_bytes) == ({}, None)


def test_a_missing_root_fails_the_scan_and_forgets_nothing_under_it(root: Path, settings: Any) -> None:
    corpus.write_safetensors(root, "b.safetensors")
    scan_now()
    moved = root.with_name("elsewhere")
    root.rename(moved)

    scan = scan_now()

    assert scan.state == ScanState.FAILED
    assert scan.errors == [{"path": str(root), "error": "the model root is missing or not a folder"}]
    assert ModelFile.objects.count() == 1


def test_a_model_name_already_taken_gets_a_suffix(root: Path) -> None:
    RegisteredModelFactory(name="Mistral")
    corpus.write_safetensors(root, "mistral.safetensors")

    scan_now()

    assert version_at(root / "mistral.safetensors").model.name == "mistral-2"


def test_a_broken_file_is_registered_counted_failed_and_named_in_the_errors(root: Path) -> None:
    path = corpus.truncated(root)

    scan = scan_now()

    assert (scan.new, scan.failed) == (1, 1)
    [error] = scan.errors
    assert error["path"] == str(path)
    assert ModelFile.objects.get().header["checks"][0]["status"] == "fail"


def test_an_escaping_symlink_is_refused_not_registered(root: Path, tmp_path: Path) -> None:
    link = corpus.escaping_symlink(root, tmp_path / "outside")

    scan = scan_now()

    assert (scan.failed, ModelVersion.objects.count()) == (1, 0)
    assert scan.errors[0]["path"] == str(link)
    assert "outside the model roots" in scan.errors[0]["error"]


def test_onnx_external_data_named_in_its_header_joins_the_version_and_stays(
    root: Path, reads: list[Path]
) -> None:
    gguf_onnx.write_external_onnx(root / "encoder", location="weights.bin")

    first = scan_now()
    second = scan_now()

    version = ModelVersion.objects.get()
    assert sorted(version.files.values_list("path", flat=True)) == ["model.onnx", "weights.bin"]
    assert (version.format, version.kind) == (ModelFormat.ONNX, "onnx-graph")
    assert reads == [root / "encoder" / "model.onnx"]  # the data file is never parsed
    assert (first.new, second.unchanged, second.removed) == (2, 2, 0)


def test_a_second_scan_request_while_one_is_active_is_a_conflict(root: Path) -> None:
    scanning.scan_request(user=None)

    with pytest.raises(Conflict, match="queued"):
        scanning.scan_request(user=None)


def test_a_scan_that_finds_another_walking_the_roots_fails_and_says_why(root: Path) -> None:
    scan = scanning.scan_request(user=None)
    other = redis_clients.redis_client().lock(scanning.base.LOCK_KEY, timeout=60)
    assert other.acquire(blocking=False)

    scan = scanning.scan_run(scan=scan)

    assert scan.state == ScanState.FAILED
    assert scan.errors[-1]["error"] == "another scan was walking the roots"


def test_a_late_duplicate_of_a_finished_scan_does_nothing(root: Path, reads: list[Path]) -> None:
    corpus.write_safetensors(root, "b.safetensors")
    scan = scan_now()
    reads.clear()

    again = scanning.scan_run(scan=scan)

    assert (again.state, again.new, reads) == (ScanState.SUCCEEDED, 1, [])


def test_a_scan_left_running_by_a_dead_worker_is_run_again_on_redelivery(root: Path) -> None:
    corpus.write_safetensors(root, "b.safetensors")
    scan = scanning.scan_request(user=None)
    ScanRun.objects.filter(pk=scan.pk).update(state=ScanState.RUNNING)

    scan = scanning.scan_run(scan=scan)

    assert (scan.state, scan.new) == (ScanState.SUCCEEDED, 1)


def test_a_running_scan_whose_worker_went_quiet_is_failed_by_the_reconciler(root: Path) -> None:
    scan = scanning.scan_request(user=None)
    quiet = timezone.now() - dt.timedelta(minutes=30)
    ScanRun.objects.filter(pk=scan.pk).update(state=ScanState.RUNNING, updated_at=quiet)

    assert scanning.scans_fail_stale() == 1

    scan.refresh_from_db()
    assert scan.state == ScanState.FAILED
    assert "worker stopped" in scan.errors[-1]["error"]


def test_a_scan_queued_long_ago_is_sent_again_under_a_new_task_id(
    root: Path, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Commits
) -> None:
    scan = scanning.scan_request(user=None)
    ScanRun.objects.filter(pk=scan.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        scanning.scans_fail_stale()

    assert sent["scan"] == [[scan.pk]]
    old_task_id = scan.task_id
    scan.refresh_from_db()
    assert scan.task_id != old_task_id


def test_a_poisoned_scan_is_failed_so_that_the_next_can_start(root: Path) -> None:
    scan = scanning.scan_request(user=None)

    scanning.scan_poisoned(scan_id=scan.pk)

    scan.refresh_from_db()
    assert scan.state == ScanState.FAILED
    assert scanning.scan_request(user=None).state == ScanState.QUEUED


def test_the_periodic_task_starts_a_scan_unless_one_is_active(root: Path) -> None:
    first = tasks.registry_scan_periodic()

    assert ScanRun.objects.get().pk == first
    assert tasks.registry_scan_periodic() is None


def test_a_scan_queues_checksums_in_chunks_and_validations_on_commit(
    root: Path,
    sent: dict[str, list[Any]],
    django_capture_on_commit_callbacks: Commits,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scanning.checksums, "_CHECKSUM_CHUNK_FILES", 2)
    for name in ("a", "b", "c"):
        corpus.write_safetensors(root, f"{name}.safetensors")

    with django_capture_on_commit_callbacks(execute=True):
        scan_now()

    assert len(sent["scan"]) == 1
    assert sorted(len(chunk) for chunk in sent["checksum"]) == [1, 2]
    assert len(sent["validate"]) == 3


def test_a_warm_rescan_queues_no_checksum_for_files_already_hashed(
    root: Path, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Commits
) -> None:
    corpus.write_safetensors(root, "a.safetensors")
    scan_now()
    for file in ModelFile.objects.select_related("version"):
        scanning.file_checksum(file=file)

    with django_capture_on_commit_callbacks(execute=True):
        scan_now()

    assert sent["checksum"] == []


def _scanned_file(root: Path, name: str = "a.safetensors", size: int = 0) -> ModelFile:
    tensors = {"w": ("U8", [size])} if size else None
    corpus.write_safetensors(root, name, tensors)
    scan_now()
    return ModelFile.objects.select_related("version").get(path=name)


def test_a_checksum_streams_the_file_and_records_sha256_with_its_fingerprint(root: Path) -> None:
    file = _scanned_file(root, size=16 << 20)
    content = (root / "a.safetensors").read_bytes()

    tracemalloc.start()
    try:
        assert scanning.file_checksum(file=file)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    file.refresh_from_db()
    assert file.sha256 == hashlib.sha256(content).hexdigest()
    assert file.checksummed == f"{file.size_bytes}:{file.mtime_ns}:{file.inode}"
    assert peak < 4 << 20


def test_a_current_checksum_is_not_computed_again(root: Path) -> None:
    file = _scanned_file(root)
    scanning.file_checksum(file=file)
    file.refresh_from_db()

    assert scanning.file_checksum(file=file) is False


def test_a_file_that_changes_while_hashed_gets_no_checksum(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = _scanned_file(root)
    path = root / "a.safetensors"
    real_open = open

    def open_then_append(name: Any, mode: str = "r", *args: Any) -> Any:
        handle = real_open(name, mode, *args)
        with real_open(path, "ab") as writer:
            writer.write(b"more")
        return handle

    monkeypatch.setattr(scanning.checksums, "open", open_then_append, raising=False)

    assert scanning.file_checksum(file=file) is False
    file.refresh_from_db()
    assert (file.sha256, file.checksummed) == ("", "")


def test_a_file_changed_since_the_scan_gets_no_checksum_until_scanned_again(root: Path) -> None:
    file = _scanned_file(root)
    os.utime(root / "a.safetensors", ns=(1, 1))

    assert scanning.file_checksum(file=file) is False


def test_hashing_every_file_of_a_version_queues_its_validation(
    root: Path, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Commits
) -> None:
    corpus.write_adapter_folder(root / "lora")
    scan_now()
    ids = list(ModelFile.objects.values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        assert scanning.files_checksum(file_ids=ids[:1]) == 1
    assert sent["validate"] == []
    with django_capture_on_commit_callbacks(execute=True):
        assert scanning.files_checksum(file_ids=ids[1:]) == 1
    assert sent["validate"] == [ModelVersion.objects.get().pk]


def _lines(version: ModelVersion, status: str) -> dict[str, str]:
    return {line["check"]: line["detail"] for line in version.validation_report if line["status"] == status}


def test_a_sound_version_is_valid_with_a_report_and_its_sha256_once_hashed(root: Path) -> None:
    file = _scanned_file(root)
    scanning.file_checksum(file=file)

    version = validated(file.version)

    assert version.validation_state == ValidationState.VALID
    assert {"header_size", "offsets_contiguous", "checksum"} <= set(_lines(version, "pass"))
    file.refresh_from_db()
    assert version.sha256 == file.sha256


def test_a_version_not_hashed_yet_is_valid_with_a_checksum_warning(root: Path) -> None:
    version = validated(_scanned_file(root).version)

    assert version.validation_state == ValidationState.VALID
    assert "not hashed yet" in _lines(version, "warn")["checksum"]
    assert version.sha256 == ""


def test_a_broken_file_makes_its_version_invalid_and_says_why(root: Path) -> None:
    corpus.overlapping_offsets(root)
    scan_now()

    version = validated(ModelVersion.objects.get())

    assert version.validation_state == ValidationState.INVALID
    assert "offsets" in version.validation_error


def test_a_file_swapped_for_a_link_out_of_the_roots_fails_validation(root: Path, tmp_path: Path) -> None:
    file = _scanned_file(root)
    outside = corpus.write_safetensors(tmp_path / "outside", "a.safetensors")
    (root / "a.safetensors").unlink()
    (root / "a.safetensors").symlink_to(outside)

    version = validated(file.version)

    assert version.validation_state == ValidationState.INVALID
    assert "inside_roots" in _lines(version, "fail")
    assert scanning.file_checksum(file=file) is False


def test_a_version_with_no_files_left_is_invalid(root: Path) -> None:
    version = _scanned_file(root).version
    (root / "a.safetensors").unlink()
    scan_now()

    version = validated(version)

    assert version.validation_state == ValidationState.INVALID
    assert "files_present" in _lines(version, "fail")


def test_a_file_deleted_after_the_scan_fails_validation(root: Path) -> None:
    version = _scanned_file(root).version
    (root / "a.safetensors").unlink()

    version = validated(version)

    assert version.validation_state == ValidationState.INVALID
    assert "gone since the last scan: a.safetensors" in _lines(version, "fail")["files_present"]


def test_a_file_changed_after_the_scan_is_a_warning_until_scanned_again(root: Path) -> None:
    version = _scanned_file(root).version
    os.utime(root / "a.safetensors", ns=(1, 1))

    version = validated(version)

    assert "changed since the last scan" in _lines(version, "warn")["files_present"]


def test_validation_of_a_version_left_validating_by_a_dead_worker_runs_again(root: Path) -> None:
    version = _scanned_file(root).version
    ModelVersion.objects.filter(pk=version.pk).update(validation_state=ValidationState.VALIDATING)

    assert scanning.version_validate(version=version) == ValidationState.VALID


def test_a_version_still_pending_long_after_it_was_found_is_queued_again_by_the_next_scan(
    root: Path, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Commits
) -> None:
    version = _scanned_file(root).version
    ModelVersion.objects.filter(pk=version.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    fresh = _scanned_file(root, "b.safetensors").version

    with django_capture_on_commit_callbacks(execute=True):
        scan_now()

    assert sent["validate"] == [version.pk]
    assert fresh.validation_state == ValidationState.PENDING


def test_a_validation_request_queues_the_version_on_commit(
    root: Path, sent: dict[str, list[Any]], django_capture_on_commit_callbacks: Commits
) -> None:
    version = _scanned_file(root).version

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        scanning.validation_request(version=version)
        assert sent["validate"] == []

    assert len(callbacks) == 1
    assert sent["validate"] == [version.pk]


def test_a_scan_of_many_new_versions_creates_them_in_bulk(
    root: Path, django_assert_max_num_queries: Callable[..., Any]
) -> None:
    for number in range(200):
        (root / f"m{number}.safetensors").write_bytes(corpus.safetensors_bytes(corpus.SMALL_TENSORS))

    with django_assert_max_num_queries(40):
        scan = scan_now()

    assert (scan.new, RegisteredModel.objects.count()) == (200, 200)
