"""The first rows of a dataset as its page and the API show them: each with its split, bad rows
with their reason, long texts cut.

A preview is asked for by any viewer, in a web request, of a file of any size: so it reads a
bounded part of the file whatever it finds there: SCAN_ROWS_PER_ROW lines per row asked for (at
most SCAN_LINES_MAX lines), in at most SCAN_BYTES_MAX bytes, and it says so when it stopped short
of the rows asked for (a split with no rows in that part, say). A line over LINE_CAP_BYTES is
shown as too long to preview: only CELL_CHARS characters of a text are shown anyway.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from apps.core.domain.text import counted
from apps.core.domain.units import format_bytes
from apps.jobs.datasets.files import LineTooLong, Unreadable, lines, open_dataset
from apps.jobs.domain.datasets import DatasetFormat, Example, RowProblem, Split, in_eval, parse_lines
from apps.jobs.models import Dataset

ROWS_DEFAULT = 20
ROWS_MAX = 200
# A preview cell shows at most this many characters of a text.
CELL_CHARS = 500
# What one preview reads at most: lines per row asked for, lines, bytes, and bytes of one line.
SCAN_ROWS_PER_ROW = 10
SCAN_LINES_MAX = 10_000
SCAN_BYTES_MAX = 4 * 1024 * 1024
LINE_CAP_BYTES = 8 * 1024
TOO_LONG = f"too long to preview (over {format_bytes(LINE_CAP_BYTES)})"


@dataclass(frozen=True, slots=True)
class PreviewRow:
    row: int
    split: str  # "train" or "eval"
    prompt: str = ""
    completion: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    error: str = ""  # set for a bad row (its texts are then empty)
    note: str = ""  # set for a row not shown (too long to preview; its texts are then empty)

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "split": self.split,
            "prompt": self.prompt,
            "completion": self.completion,
            "messages": [{"role": role, "content": content} for role, content in self.messages],
            "error": self.error,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Preview:
    rows: list[PreviewRow]
    scanned: int  # lines read
    stopped: bool  # the scan cap was reached before `rows` rows were found
    unreadable: str = ""  # why the file could not be read at all

    @property
    def note(self) -> str:
        """What the reader should know besides the rows: why there are fewer than asked, if known."""
        if self.unreadable:
            return f"The file cannot be read: {self.unreadable}."
        if self.stopped:
            found = "None" if not self.rows else f"Only {len(self.rows)}"
            first = counted(self.scanned, "row")
            return f"{found} in the first {first} of the file: a preview reads no further."
        return ""


def _cut(text: str) -> str:
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…"


def preview(dataset: Dataset, *, rows: int = ROWS_DEFAULT, split: Split | str = Split.ALL) -> Preview:
    """The first `rows` rows of `split` (bad rows too, when the split is all) within the scan caps."""
    chosen = Split(split)
    wanted = max(0, min(rows, ROWS_MAX))
    max_lines = min(wanted * SCAN_ROWS_PER_ROW, SCAN_LINES_MAX)
    budget = min(SCAN_BYTES_MAX, max_lines * (LINE_CAP_BYTES + 1))
    try:
        with open_dataset(dataset) as handle:
            head = handle.read(budget)
            whole = len(head) < budget or not handle.read(1)
    except Unreadable as why:
        return Preview(rows=[], scanned=0, stopped=False, unreadable=str(why))
    except OSError as error:
        return Preview(rows=[], scanned=0, stopped=False, unreadable=error.strerror or str(error))
    end = head.rfind(b"\n") + 1
    if not whole and len(head) - end <= LINE_CAP_BYTES:
        # The last line read is cut short: it is left out (one over the cap is too long either way).
        head = head[:end]
    scan = _Scan(max_lines=max_lines, capped=not whole)
    shown = list(islice(_rows(dataset, chosen, scan, head), wanted))
    return Preview(rows=shown, scanned=scan.lines, stopped=len(shown) < wanted and scan.capped)


@dataclass(slots=True)
class _Scan:
    """How many lines the preview has read, against its cap; capped once it stopped short of the
    file's end."""

    max_lines: int
    lines: int = 0
    capped: bool = False


def _capped_lines(head: bytes, scan: _Scan) -> Iterator[tuple[int, str | RowProblem]]:
    for row, line in lines(io.BytesIO(head), cap=LINE_CAP_BYTES):
        if row > scan.max_lines:
            scan.capped = True
            return
        scan.lines = row
        yield row, line


def _rows(dataset: Dataset, split: Split, scan: _Scan, head: bytes) -> Iterator[PreviewRow]:
    for item in parse_lines(_capped_lines(head, scan), fmt=DatasetFormat(dataset.format)):
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
        elif isinstance(item, LineTooLong):
            yield PreviewRow(row=item.row, split=name, note=TOO_LONG)
        elif split == Split.ALL:
            yield PreviewRow(row=item.row, split=name, error=item.error)
