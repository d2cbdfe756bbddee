"""The first rows of a dataset as its page and the API show them: each with its split, bad rows
with their reason, long texts cut."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from apps.jobs.datasets.files import file_lines
from apps.jobs.domain.datasets import DatasetFormat, Example, Split, in_eval, parse_lines
from apps.jobs.models import Dataset

ROWS_DEFAULT = 20
ROWS_MAX = 200
# A preview cell shows at most this many characters of a text.
CELL_CHARS = 500


@dataclass(frozen=True, slots=True)
class PreviewRow:
    row: int
    split: str  # "train" or "eval"
    prompt: str = ""
    completion: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    error: str = ""  # set for a bad row (its texts are then empty)

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "split": self.split,
            "prompt": self.prompt,
            "completion": self.completion,
            "messages": [{"role": role, "content": content} for role, content in self.messages],
            "error": self.error,
        }


def _cut(text: str) -> str:
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…"


def preview(
    dataset: Dataset, *, rows: int = ROWS_DEFAULT, split: Split | str = Split.ALL
) -> list[PreviewRow]:
    """The first `rows` rows of `split` (bad rows too, when the split is all); [] when the file
    cannot be read (its validation says why)."""
    chosen = Split(split)
    try:
        return list(islice(_rows(dataset, chosen), max(0, min(rows, ROWS_MAX))))
    except OSError:
        return []


def _rows(dataset: Dataset, split: Split) -> Iterator[PreviewRow]:
    for item in parse_lines(file_lines(dataset.file_path), fmt=DatasetFormat(dataset.format)):
        held_out = in_eval(item.row, share=dataset.eval_share, seed=dataset.split_seed)
        if split != Split.ALL and held_out != (split == Split.EVAL):
            continue
        name = Split.EVAL.value if held_out else Split.TRAIN.value
        if isinstance(item, Example):
            yield PreviewRow(
                row=item.row,
                split=name,
                prompt=_cut(item.prompt),
                completion=_cut(item.completion),
                messages=tuple((role, _cut(content)) for role, content in item.messages),
            )
        elif split == Split.ALL:
            yield PreviewRow(row=item.row, split=name, error=item.error)
