"""One opener for every reader of a dataset file (review 15b items 6 and 7): validation, the runners'
reading and the preview refuse the same files (outside the roots, not regular) with the same reason,
agree with discovery on symlinks into another root, and the preview reads a bounded part of a file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.core.domain.roles import Role
from apps.jobs.datasets import discovery, preview, reading, validation
from apps.jobs.domain.datasets import Split
from apps.jobs.domain.failures import BadData
from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset
from tests.jobs.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def dataset_at(root: Path, name: str, **fields: Any) -> Dataset:
    fmt = "text" if name.endswith(".txt") else "jsonl"
    return DatasetFactory(root=str(root), path=name, format=fmt, **fields)


def refusals(dataset: Dataset) -> tuple[str, str, str]:
    """What validation, reading and the preview each say of the dataset's file."""
    validation.dataset_validate(dataset=dataset)
    dataset.refresh_from_db()
    assert dataset.state == DatasetState.INVALID
    [problem] = dataset.errors
    assert problem["row"] == 0
    with pytest.raises(BadData) as raised:
        list(reading.examples(dataset, split=Split.ALL))
    assert raised.value.row == 0
    shown = preview.preview(dataset)
    assert shown.rows == []
    return problem["error"], raised.value.why, shown.unreadable


def test_a_file_swapped_for_a_symlink_out_of_the_roots_is_read_by_none(
    dataset_root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret\n")
    os.symlink(secret, dataset_root / "notes.txt")
    dataset = dataset_at(dataset_root, "notes.txt")

    why = f"the file resolves to {secret}, outside the dataset roots"
    assert refusals(dataset) == (why, why, why)


@pytest.mark.timeout(20)
def test_a_file_swapped_for_a_fifo_is_refused_at_once_by_every_reader(dataset_root: Path) -> None:
    os.mkfifo(dataset_root / "pipe.jsonl")
    dataset = dataset_at(dataset_root, "pipe.jsonl")

    assert refusals(dataset) == ("not a regular file",) * 3


def test_a_symlink_into_another_root_is_found_and_valid(
    settings: Any, dataset_root: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-root"
    other.mkdir()
    (other / "real.txt").write_text("one\ntwo\n")
    os.symlink(other / "real.txt", dataset_root / "linked.txt")
    settings.MOC_DATASET_ROOTS = [str(dataset_root), str(other)]

    walked = discovery.walk(settings.MOC_DATASET_ROOTS)
    dataset = dataset_at(dataset_root, "linked.txt")
    validation.dataset_validate(dataset=dataset)

    assert (str(dataset_root), "linked.txt") in {(f.root, f.path) for f in walked.found}
    dataset.refresh_from_db()
    assert (dataset.state, dataset.rows) == (DatasetState.VALID, 2)
    assert [e.text for e in reading.examples(dataset, split=Split.ALL)] == ["one", "two"]


def test_a_preview_of_an_empty_split_stops_after_ten_lines_a_row(dataset_root: Path) -> None:
    (dataset_root / "big.txt").write_text("".join(f"row {n}\n" for n in range(1, 50_001)))
    dataset = dataset_at(dataset_root, "big.txt", eval_share=0.0)

    shown = preview.preview(dataset, rows=20, split=Split.EVAL)

    assert shown.rows == []
    assert shown.scanned == 200
    assert shown.note == "None in the first 200 rows of the file: a preview reads no further."


@pytest.mark.parametrize("rows", [1, preview.ROWS_MAX])
def test_a_preview_reads_ten_lines_a_row_asked_for_at_most(dataset_root: Path, rows: int) -> None:
    (dataset_root / "big.txt").write_text("".join(f"row {n}\n" for n in range(1, 50_001)))
    dataset = dataset_at(dataset_root, "big.txt", eval_share=0.0)

    shown = preview.preview(dataset, rows=rows, split=Split.EVAL)

    assert shown.scanned == min(10 * rows, preview.SCAN_LINES_MAX)


def test_a_preview_that_finds_its_rows_or_the_files_end_says_nothing_more(dataset_root: Path) -> None:
    (dataset_root / "small.txt").write_text("".join(f"row {n}\n" for n in range(1, 6)))
    dataset = dataset_at(dataset_root, "small.txt", eval_share=0.0)

    assert preview.preview(dataset, rows=20, split=Split.EVAL).note == ""
    assert [r.row for r in preview.preview(dataset, rows=3).rows] == [1, 2, 3]


def test_a_long_row_is_marked_too_long_to_preview_and_the_next_shown(dataset_root: Path) -> None:
    long_row = json.dumps({"text": "x" * 100_000})
    (dataset_root / "long.jsonl").write_text(f'{{"text": "first"}}\n{long_row}\n{{"text": "third"}}\n')
    dataset = dataset_at(dataset_root, "long.jsonl")

    rows = preview.preview(dataset, rows=5).rows

    assert [(r.row, r.completion, r.note, r.error) for r in rows] == [
        (1, "first", "", ""),
        (2, "", preview.TOO_LONG, ""),
        (3, "third", "", ""),
    ]


def test_a_file_of_huge_rows_is_read_only_up_to_the_byte_cap(dataset_root: Path) -> None:
    row = "x" * 1_000_000 + "\n"
    (dataset_root / "huge.txt").write_text(row * 20)
    dataset = dataset_at(dataset_root, "huge.txt")

    shown = preview.preview(dataset, rows=20)

    # 20 rows x 10 lines of at most 8 KiB each: 1.6 MB of a 20 MB file, so two of its rows.
    assert [(r.row, r.note) for r in shown.rows] == [(1, preview.TOO_LONG), (2, preview.TOO_LONG)]
    assert shown.note.startswith("Only 2 in the first 2 rows of the file")


def test_the_api_preview_says_why_it_stopped(
    client_as: Callable[[Role | None], Any], dataset_root: Path
) -> None:
    (dataset_root / "big.txt").write_text("".join(f"row {n}\n" for n in range(1, 1001)))
    dataset = dataset_at(dataset_root, "big.txt", eval_share=0.0)

    body = (
        client_as(Role.VIEWER)
        .get(f"/api/v1/datasets/{dataset.pk}/preview/", {"split": "eval", "rows": 5})
        .json()
    )

    assert body == {
        "split": "eval",
        "rows": [],
        "note": "None in the first 50 rows of the file: a preview reads no further.",
    }
