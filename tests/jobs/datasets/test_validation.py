"""Validation reads a file row by row and names each bad row by its number; reading and preview
give the rows of a split by the same rules."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from apps.jobs import tasks
from apps.jobs.datasets import preview, reading, validation
from apps.jobs.domain.datasets import ERRORS_KEPT, Example, Split
from apps.jobs.domain.failures import BadData
from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset
from tests.jobs.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def dataset_at(path: Path, **fields: object) -> Dataset:
    fmt = "text" if path.suffix == ".txt" else "jsonl"
    return DatasetFactory(root=str(path.parent), path=path.name, format=fmt, **fields)


def test_a_good_file_is_valid_with_its_rows_shape_and_checksum(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl(
        "pc.jsonl", [{"prompt": "Q", "completion": "A"}, "", {"prompt": "", "completion": "B"}]
    )
    dataset = dataset_at(path)

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert dataset.state == DatasetState.VALID
    assert (dataset.rows, dataset.shape, dataset.error_count, dataset.errors) == (
        2,
        "prompt_completion",
        0,
        [],
    )
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert dataset.fingerprint.startswith(f"{path.stat().st_size}:")
    assert dataset.validated_at is not None


def test_bad_rows_are_named_by_their_numbers(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl(
        "chat.jsonl",
        [
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            "{not json",
            {"messages": [{"role": "user", "content": "only a question"}]},
            {"text": "a text row"},
            {"messages": [{"role": "wizard", "content": "x"}]},
        ],
    )
    dataset = dataset_at(path)

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert dataset.state == DatasetState.INVALID
    assert [e["row"] for e in dataset.errors] == [2, 3, 4, 5]
    assert dataset.errors[0]["error"].startswith("not JSON")
    assert "no assistant message" in dataset.errors[1]["error"]
    assert dataset.errors[2]["error"] == "a text row in a dataset of chat rows"
    assert "'role' must be one of" in dataset.errors[3]["error"]
    assert (dataset.rows, dataset.error_count) == (1, 4)


def test_a_file_that_is_not_utf8_is_refused_naming_the_row(dataset_root: Path) -> None:
    path = dataset_root / "latin1.txt"
    path.write_bytes("good line\ncaf\xe9 au lait\n".encode("latin-1"))
    dataset = dataset_at(path)

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert dataset.state == DatasetState.INVALID
    assert dataset.errors == [{"row": 2, "error": "not UTF-8 text: byte 0xe9 at column 4"}]


def test_a_binary_file_without_newlines_is_read_in_pieces_and_refused(
    dataset_root: Path, settings: object
) -> None:
    path = dataset_root / "blob.txt"
    path.write_bytes(b"\x00\x01" * 1000)
    dataset = dataset_at(path)

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert dataset.state == DatasetState.INVALID
    assert dataset.errors[0]["row"] == 1
    assert "NUL byte" in dataset.errors[0]["error"]


def test_only_the_first_bad_rows_are_kept_but_all_are_counted(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl("bad.jsonl", ["[1]"] * (ERRORS_KEPT + 20))
    dataset = dataset_at(path)

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert (len(dataset.errors), dataset.error_count) == (ERRORS_KEPT, ERRORS_KEPT + 20)


def test_an_empty_file_is_invalid(dataset_root: Path) -> None:
    path = dataset_root / "empty.jsonl"
    path.write_text("\n\n")
    dataset = dataset_at(path)

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert (dataset.state, dataset.errors) == (
        DatasetState.INVALID,
        [{"row": 0, "error": "the file has no rows"}],
    )


def test_a_missing_file_is_invalid_saying_so(dataset_root: Path) -> None:
    dataset = dataset_at(dataset_root / "gone.jsonl")

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert dataset.state == DatasetState.INVALID
    assert dataset.errors == [{"row": 0, "error": "the file is no longer in its dataset root"}]


def test_the_validate_task_is_safe_to_run_twice(write_jsonl: Callable[..., Path]) -> None:
    dataset = dataset_at(write_jsonl("a.jsonl", [{"text": "x"}]))

    assert tasks.dataset_validate.run(dataset.pk) == "valid"
    assert tasks.dataset_validate.run(dataset.pk) == "valid"
    assert tasks.dataset_validate.run(dataset.pk + 1000) is None


def test_examples_give_train_and_eval_rows_that_split_the_file(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl("t.jsonl", [{"text": f"row {n}"} for n in range(1, 41)])
    dataset = dataset_at(path, eval_share=0.25, split_seed=3)

    train = list(reading.examples(dataset, split=Split.TRAIN))
    held_out = list(reading.examples(dataset, split="eval"))

    assert all(isinstance(e, Example) for e in train + held_out)
    assert sorted(e.row for e in train + held_out) == list(range(1, 41))
    assert held_out
    assert train
    assert reading.count(dataset, split=Split.EVAL) == len(held_out)
    assert reading.count(dataset, split=Split.ALL) == 40
    assert [e.row for e in reading.examples(dataset, split=Split.EVAL)] == [e.row for e in held_out]


def test_examples_raise_bad_data_naming_the_row(write_jsonl: Callable[..., Path]) -> None:
    dataset = dataset_at(write_jsonl("t.jsonl", [{"text": "fine"}, {"text": ""}]), name="broken")

    with pytest.raises(BadData) as raised:
        list(reading.examples(dataset, split=Split.ALL))

    assert (raised.value.dataset, raised.value.row) == ("broken", 2)
    assert str(raised.value) == "dataset broken, row 2: 'text' must be a non-empty string"


def test_examples_of_a_missing_file_raise_bad_data(dataset_root: Path) -> None:
    dataset = dataset_at(dataset_root / "gone.jsonl")

    with pytest.raises(BadData, match="row 0: the file is no longer in its dataset root"):
        list(reading.examples(dataset, split=Split.ALL))


def test_preview_marks_each_rows_split_and_shows_bad_rows(write_jsonl: Callable[..., Path]) -> None:
    rows = [{"prompt": "p", "completion": f"c{n}"} for n in range(1, 30)]
    rows[4] = {"prompt": 1}
    dataset = dataset_at(write_jsonl("p.jsonl", rows), eval_share=0.3)

    shown = preview.preview(dataset, rows=10).rows
    held_out = preview.preview(dataset, rows=10, split=Split.EVAL).rows

    assert [r.row for r in shown] == list(range(1, 11))
    assert shown[4].error == "'prompt' must be a string"
    assert {r.split for r in shown} == {"train", "eval"}
    assert held_out
    assert all(r.split == "eval" and not r.error for r in held_out)


def test_a_row_past_the_length_cap_is_refused_and_the_next_row_read(dataset_root: Path) -> None:
    path = dataset_root / "long.txt"
    with path.open("wb") as out:
        out.write(b"first\n")
        out.write(b"x" * (4 * 1_000_000 + 10) + b"\n")
        out.write(b"third\n")
    dataset = dataset_at(path)

    validation.dataset_validate(dataset=dataset)

    dataset.refresh_from_db()
    assert dataset.rows == 2
    assert [e["row"] for e in dataset.errors] == [2]
    assert "longer than" in dataset.errors[0]["error"]
