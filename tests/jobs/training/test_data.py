"""Rows as tokens: only the completion learned (prompt, system and user turns, padding at -100),
chats through the tokenizer's template, a row with nothing to learn refused with its number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from apps.jobs.domain.datasets import Example, Shape
from apps.jobs.domain.failures import BadData
from apps.jobs.training.data import IGNORE, batches, encode


@pytest.fixture(scope="module")
def tokenizer(demo_models: Path) -> Any:
    return AutoTokenizer.from_pretrained(demo_models / "demo-gpt2", local_files_only=True)


def _learned(tokenizer: Any, row: Any) -> str:
    return tokenizer.decode(
        [i for i, label in zip(row.input_ids, row.labels, strict=True) if label != IGNORE]
    )


def test_a_text_row_is_learned_whole_with_its_end(tokenizer: Any) -> None:
    [row] = encode(
        [Example(row=1, shape=Shape.TEXT, completion="The registry holds models.")],
        tokenizer,
        seq_len=64,
        dataset="d",
    )

    assert row.labels == row.input_ids
    assert tokenizer.decode(row.input_ids) == "The registry holds models.<|endoftext|>"


def test_a_prompt_is_read_but_not_learned(tokenizer: Any) -> None:
    example = Example(row=1, shape=Shape.PROMPT_COMPLETION, prompt="Status:", completion=" green")

    [row] = encode([example], tokenizer, seq_len=64, dataset="d")

    assert tokenizer.decode(row.input_ids) == "Status: green<|endoftext|>"
    assert _learned(tokenizer, row) == " green<|endoftext|>"
    assert row.labels[0] == IGNORE


def test_a_chat_goes_through_the_template_and_only_the_assistant_is_learned(tokenizer: Any) -> None:
    chat = (
        ("system", "Be brief."),
        ("user", "How is it?"),
        ("assistant", "Green."),
        ("user", "And now?"),
        ("assistant", "Still green."),
    )

    [row] = encode([Example(row=3, shape=Shape.CHAT, messages=chat)], tokenizer, seq_len=128, dataset="d")

    text = tokenizer.decode(row.input_ids)
    assert text.startswith("System: Be brief.\nUser: How is it?\nAssistant:")
    assert _learned(tokenizer, row) == " Green.\n Still green.\n<|endoftext|>"


def test_a_chat_without_a_template_learns_the_assistant_lines_of_its_text(tokenizer: Any) -> None:
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path, local_files_only=True)
    plain.chat_template = None
    example = Example(row=1, shape=Shape.CHAT, messages=(("user", "Hi"), ("assistant", "Hello")))

    [row] = encode([example], plain, seq_len=64, dataset="d")

    assert plain.decode(row.input_ids) == example.text + "<|endoftext|>"
    assert _learned(plain, row) == "Hello<|endoftext|>"


def test_rows_are_cut_to_the_sequence_length(tokenizer: Any) -> None:
    [row] = encode(
        [Example(row=1, shape=Shape.TEXT, completion="models " * 50)], tokenizer, seq_len=16, dataset="d"
    )

    assert len(row.input_ids) == len(row.labels) == 16


def test_a_row_whose_prompt_fills_the_sequence_is_refused_with_its_number(tokenizer: Any) -> None:
    rows = [
        Example(row=1, shape=Shape.PROMPT_COMPLETION, prompt="Q:", completion=" A"),
        Example(row=9, shape=Shape.PROMPT_COMPLETION, prompt="models " * 40, completion=" A"),
    ]

    with pytest.raises(BadData) as raised:
        encode(rows, tokenizer, seq_len=16, dataset="status")

    assert (raised.value.dataset, raised.value.row) == ("status", 9)
    assert (
        str(raised.value) == "dataset status, row 9: nothing to learn within the sequence length of 16 tokens"
    )


def test_batches_pad_each_to_its_longest_row_and_never_learn_the_padding(tokenizer: Any) -> None:
    rows = encode(
        [Example(row=i, shape=Shape.TEXT, completion="models " * i) for i in (1, 5, 2)],
        tokenizer,
        seq_len=64,
        dataset="d",
    )

    first, second = batches(rows, batch_size=2, pad_id=0)

    assert first["input_ids"].shape == first["labels"].shape == first["attention_mask"].shape
    assert first["input_ids"].shape[1] == len(rows[1].input_ids)
    short = len(rows[0].input_ids)
    assert first["attention_mask"][0].tolist() == [1] * short + [0] * (first["input_ids"].shape[1] - short)
    assert (first["labels"][0, short:] == IGNORE).all()
    assert (first["input_ids"][0, short:] == 0).all()
    assert second["input_ids"].shape == (1, len(rows[2].input_ids))
