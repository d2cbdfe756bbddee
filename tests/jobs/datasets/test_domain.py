"""The pure rules: lines read as rows, the tally validation keeps, names, the seeded split."""

from __future__ import annotations

import pytest

from apps.jobs.domain.datasets import (
    ERRORS_KEPT,
    DatasetFormat,
    Example,
    RowProblem,
    Shape,
    Split,
    Tally,
    decode_line,
    in_eval,
    name_from,
    name_problem,
    numbered,
    parse_lines,
    upload_file_name,
    wanted,
)


def test_parse_lines_fixes_the_shape_by_the_first_good_row() -> None:
    lines = [
        (1, '{"prompt": "a", "completion": "b"}'),
        (2, ""),
        (3, '{"text": "c"}'),
        (4, '{"prompt": "", "completion": "d"}'),
    ]

    items = list(parse_lines(lines, fmt=DatasetFormat.JSONL))

    assert [type(item) for item in items] == [Example, RowProblem, Example]
    assert items[1] == RowProblem(3, "a text row in a dataset of prompt_completion rows")
    assert items[2].row == 4


def test_parse_lines_passes_a_reading_problem_through_with_its_row() -> None:
    problem = RowProblem(2, "not UTF-8 text: byte 0xff at column 1")

    items = list(parse_lines([(1, "hello"), (2, problem)], fmt=DatasetFormat.TEXT))

    assert items == [Example(row=1, shape=Shape.TEXT, completion="hello"), problem]


def test_decode_line_refuses_bytes_that_are_not_utf8_naming_the_column() -> None:
    assert decode_line(b"ok \xff\n", row=7) == RowProblem(7, "not UTF-8 text: byte 0xff at column 4")


def test_decode_line_refuses_a_nul_byte_as_binary() -> None:
    found = decode_line(b"ab\x00c", row=2)

    assert isinstance(found, RowProblem)
    assert "NUL byte at column 3" in found.error


def test_decode_line_drops_a_byte_order_mark_on_the_first_line_only() -> None:
    assert decode_line(b'\xef\xbb\xbf{"text": "x"}', row=1) == '{"text": "x"}'
    assert decode_line(b"\xef\xbb\xbfx", row=2) == "\ufeffx"


def test_tally_keeps_the_first_errors_and_counts_them_all() -> None:
    tally = Tally()
    for row in range(1, ERRORS_KEPT + 6):
        tally.add(RowProblem(row, "bad"))
    tally.add(Example(row=999, shape=Shape.TEXT, completion="x"))

    assert tally.error_count == ERRORS_KEPT + 5
    assert len(tally.errors) == ERRORS_KEPT
    assert tally.errors[0].row == 1
    assert (tally.rows, tally.shape, tally.valid) == (1, Shape.TEXT, False)


def test_an_empty_file_is_not_valid() -> None:
    tally = Tally().finish()

    assert not tally.valid
    assert tally.errors == [RowProblem(0, "the file has no rows")]


def test_the_split_is_the_same_for_the_same_seed_and_moves_with_another() -> None:
    first = [in_eval(row, share=0.3, seed=7) for row in range(1, 2001)]

    assert first == [in_eval(row, share=0.3, seed=7) for row in range(1, 2001)]
    assert first != [in_eval(row, share=0.3, seed=8) for row in range(1, 2001)]
    assert 0.25 < sum(first) / len(first) < 0.35


def test_a_row_is_in_exactly_one_of_train_and_eval() -> None:
    for row in range(1, 200):
        train = wanted(row, split=Split.TRAIN, share=0.2, seed=3)
        held_out = wanted(row, split=Split.EVAL, share=0.2, seed=3)
        assert train != held_out
        assert wanted(row, split=Split.ALL, share=0.2, seed=3)


def test_no_row_is_held_out_at_share_zero() -> None:
    assert not any(in_eval(row, share=0.0, seed=1) for row in range(1, 500))


@pytest.mark.parametrize(
    ("raw", "name"),
    [("chat/support.jsonl", "chat-support"), (".hidden.txt", "hidden"), ("ü.txt", "dataset")],
)
def test_name_from_makes_a_valid_name(raw: str, name: str) -> None:
    assert name_from(raw) == name
    assert name_problem(name) is None


def test_name_problem_refuses_a_name_with_a_slash() -> None:
    assert name_problem("a/b") is not None


def test_numbered_alternatives_stay_within_the_limit() -> None:
    assert numbered("corpus", 1) == "corpus"
    assert numbered("corpus", 3) == "corpus-3"
    assert len(numbered("x" * 100, 12)) == 100


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/evil.jsonl", "evil.jsonl"),
        ("C:\\Users\\me\\My Data.txt", "My-Data.txt"),
        (".bashrc.txt", "bashrc.txt"),
        ("rows.JSONL", "rows.jsonl"),
        ("..jsonl", "dataset.jsonl"),
    ],
)
def test_upload_file_name_keeps_only_a_safe_base_name(raw: str, safe: str) -> None:
    assert upload_file_name(raw) == safe


def test_upload_file_name_refuses_a_file_moc_does_not_read() -> None:
    with pytest.raises(ValueError, match=r"\.jsonl or \.txt"):
        upload_file_name("model.bin")
