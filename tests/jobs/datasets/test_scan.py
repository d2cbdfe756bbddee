"""Discovery and the scan: files found by stat, registered once, changed and vanished ones marked,
validations queued; nothing outside the roots followed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from apps.core.models import OutboxMessage
from apps.jobs import tasks
from apps.jobs.datasets import discovery, messages, services, validation
from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset

pytestmark = pytest.mark.django_db


def queued_validations() -> list[int]:
    return [m.args[0] for m in OutboxMessage.objects.filter(task_name=messages.DATASET_VALIDATE)]


def test_walk_finds_jsonl_and_text_files_and_skips_the_rest(dataset_root: Path) -> None:
    (dataset_root / "a.jsonl").write_text('{"text": "x"}\n')
    (dataset_root / "sub").mkdir()
    (dataset_root / "sub" / "b.txt").write_text("x\n")
    (dataset_root / "notes.md").write_text("x")
    (dataset_root / ".upload-123.part").write_text("x")
    (dataset_root / ".git").mkdir()
    (dataset_root / ".git" / "c.txt").write_text("x")

    found = discovery.walk([dataset_root])

    assert [f.path for f in found.found] == ["a.jsonl", "sub/b.txt"]
    assert found.refused == ()


def test_walk_refuses_a_symlink_that_leaves_the_roots(dataset_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret\n")
    os.symlink(outside, dataset_root / "link.txt")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "d.txt").write_text("x\n")
    os.symlink(tmp_path / "elsewhere", dataset_root / "folder")

    found = discovery.walk([dataset_root])

    assert found.found == ()
    assert {Path(r.path).name for r in found.refused} == {"link.txt", "folder"}
    assert all("outside the dataset roots" in r.reason for r in found.refused)


def test_walk_refuses_a_fifo_named_like_a_dataset(dataset_root: Path) -> None:
    os.mkfifo(dataset_root / "pipe.jsonl")

    found = discovery.walk([dataset_root])

    assert found.found == ()
    assert [r.reason for r in found.refused] == ["not a regular file"]


def test_scan_registers_new_files_pending_and_queues_their_validation(dataset_root: Path) -> None:
    (dataset_root / "corpus.txt").write_text("one\ntwo\n")

    result = services.datasets_scan()

    dataset = Dataset.objects.get()
    assert (result.new, result.unchanged) == (1, 0)
    assert (dataset.name, dataset.path, dataset.root) == ("corpus", "corpus.txt", str(dataset_root))
    assert (dataset.state, dataset.format, dataset.size_bytes) == (DatasetState.PENDING, "text", 8)
    assert queued_validations() == [dataset.pk]


def test_a_second_scan_skips_an_unchanged_validated_file(dataset_root: Path) -> None:
    (dataset_root / "corpus.txt").write_text("one\n")
    services.datasets_scan()
    validation.dataset_validate(dataset=Dataset.objects.get())
    OutboxMessage.objects.all().delete()

    result = services.datasets_scan()

    assert (result.new, result.changed, result.unchanged) == (0, 0, 1)
    assert queued_validations() == []
    assert Dataset.objects.get().state == DatasetState.VALID


def test_a_scan_marks_a_changed_file_pending_again(dataset_root: Path) -> None:
    path = dataset_root / "corpus.txt"
    path.write_text("one\n")
    services.datasets_scan()
    dataset = validation.dataset_validate(dataset=Dataset.objects.get())
    path.write_text("one\ntwo\nthree\n")

    result = services.datasets_scan()

    dataset.refresh_from_db()
    assert result.changed == 1
    assert (dataset.state, dataset.size_bytes) == (DatasetState.PENDING, 14)
    assert dataset.pk in queued_validations()


def test_a_scan_marks_a_vanished_file_invalid_and_keeps_its_row(dataset_root: Path) -> None:
    path = dataset_root / "corpus.txt"
    path.write_text("one\n")
    services.datasets_scan()
    validation.dataset_validate(dataset=Dataset.objects.get())
    path.unlink()

    result = services.datasets_scan()
    again = services.datasets_scan()

    dataset = Dataset.objects.get()
    assert (result.missing, again.missing) == (1, 0)
    assert dataset.state == DatasetState.INVALID
    assert dataset.errors == [{"row": 0, "error": services.GONE}]


def test_a_scan_names_a_second_file_of_the_same_stem_apart(dataset_root: Path) -> None:
    (dataset_root / "data.jsonl").write_text('{"text": "x"}\n')
    (dataset_root / "data.txt").write_text("x\n")

    services.datasets_scan()

    assert sorted(Dataset.objects.values_list("name", flat=True)) == ["data", "data-2"]


def test_a_scan_reports_a_missing_root(dataset_root: Path, settings: object, tmp_path: Path) -> None:
    gone = str(tmp_path / "not-there")
    settings.MOC_DATASET_ROOTS = [str(dataset_root), gone]  # type: ignore[attr-defined]

    result = services.datasets_scan()

    assert result.missing_roots == [gone]


def test_scan_task_is_safe_to_run_twice(dataset_root: Path, write_jsonl: Callable[..., Path]) -> None:
    write_jsonl("a.jsonl", [{"text": "x"}])

    first = tasks.datasets_scan.run()
    second = tasks.datasets_scan.run()

    assert (first["new"], second["new"], second["unchanged"]) == (1, 0, 1)
    assert Dataset.objects.count() == 1
