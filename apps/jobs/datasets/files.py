"""Reading a dataset file line by line, streaming: the one reader that validation, the runners and
the preview share, so they agree on every row's number and text.

A line is read with a cap, so a file without newlines (a binary misnamed .txt) never comes into
memory whole: a line past the cap is a bad row, skipped to its end in chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import BinaryIO

from apps.jobs.domain.datasets import ROW_MAX_CHARS, RowProblem, decode_line

# A row at the character limit written in 4-byte UTF-8 characters, and its newline.
LINE_CAP_BYTES = ROW_MAX_CHARS * 4 + 1
_SKIP_CHUNK = 1024 * 1024


def lines(handle: BinaryIO, *, hasher: hashlib._Hash | None = None) -> Iterator[tuple[int, str | RowProblem]]:
    """(row number, its text or why it cannot be read) for every line of `handle`, from 1; every
    byte read goes through `hasher` when one is given."""
    row = 0
    while raw := handle.readline(LINE_CAP_BYTES + 1):
        row += 1
        if hasher is not None:
            hasher.update(raw)
        if len(raw) > LINE_CAP_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(_SKIP_CHUNK)
                if hasher is not None:
                    hasher.update(raw)
            yield row, RowProblem(row, f"the row is longer than {ROW_MAX_CHARS:,} characters")
            continue
        yield row, decode_line(raw, row=row)


def file_lines(path: str) -> Iterator[tuple[int, str | RowProblem]]:
    """`lines` of the file at `path` (closed when the iteration ends or is dropped)."""
    with open(path, "rb") as handle:
        yield from lines(handle)
