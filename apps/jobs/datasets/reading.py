"""A dataset's rows for the runners: the examples of one split, read streaming from its file.

The file is read with the same reader and rules validation used, and the split is the seeded
rule of domain.datasets over row numbers, so a fine-tune and an evaluation of the same dataset
always see the same train and eval rows.
"""

from __future__ import annotations

from collections.abc import Iterator

from apps.jobs.datasets.files import Unreadable, dataset_lines
from apps.jobs.domain.datasets import DatasetFormat, Example, Split, parse_lines, wanted
from apps.jobs.domain.failures import BadData
from apps.jobs.models import Dataset


def examples(dataset: Dataset, *, split: Split | str) -> Iterator[Example]:
    """The rows of `split` in file order. Raises BadData naming the row when a row cannot be used
    (the file changed since validation), or row 0 when the file may not or cannot be read (outside
    the dataset roots, not a regular file: files.open_dataset)."""
    chosen = Split(split)
    try:
        for item in parse_lines(dataset_lines(dataset), fmt=DatasetFormat(dataset.format)):
            if not isinstance(item, Example):
                raise BadData(dataset.name, item.row, item.error)
            if wanted(item.row, split=chosen, share=dataset.eval_share, seed=dataset.split_seed):
                yield item
    except Unreadable as why:
        raise BadData(dataset.name, 0, str(why)) from None
    except OSError as error:
        raise BadData(dataset.name, 0, f"the file could not be read: {error.strerror or error}") from error


def count(dataset: Dataset, *, split: Split | str) -> int:
    """How many rows `split` holds (the file is read: the split is over row numbers)."""
    return sum(1 for _ in examples(dataset, split=split))
