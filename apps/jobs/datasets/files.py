"""Opening and reading a dataset file: the one opener and line reader that validation, the runners
and the preview share, so they agree on which files may be read and on every row's number and text.

`open_dataset` reads only a regular file whose real path lies in a dataset root: the configured
roots (MOC_DATASET_ROOTS, the same rule discovery applies to symlinks) or the root the dataset was
registered under. A file swapped for a symlink to elsewhere, or for a FIFO or a device, after a
scan is refused with the reason, never followed or waited on.

A line is read with a cap, so a file without newlines (a binary misnamed .txt) never comes into
memory whole: a line past the cap is a bad row, skipped to its end in chunks.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from django.conf import settings

from apps.jobs.domain.datasets import ROW_MAX_CHARS, RowProblem, decode_line
from apps.models.discovery import resolve_roots, under

# A row at the character limit written in 4-byte UTF-8 characters, and its newline.
LINE_CAP_BYTES = ROW_MAX_CHARS * 4 + 1
_SKIP_CHUNK = 1024 * 1024


class DatasetFile(Protocol):
    """Where a dataset's file lies (a Dataset row)."""

    root: str
    path: str


class Unreadable(Exception):
    """Why a dataset's file may not be read; the message is the reason, for a user."""


class LineTooLong(RowProblem):
    """A line longer than the reader's cap (the row itself may be good: the preview's cap is small)."""

    __slots__ = ()


def open_dataset(dataset: DatasetFile) -> BinaryIO:
    """The dataset's file opened for reading in binary; Unreadable saying why when it is not a
    regular file inside a dataset root, or cannot be opened."""
    real = os.path.realpath(os.path.join(dataset.root, dataset.path))
    roots = resolve_roots([*settings.MOC_DATASET_ROOTS, dataset.root])
    if not any(under(real, root) for root in roots):
        raise Unreadable(f"the file resolves to {real}, outside the dataset roots")
    # The real path has no symlink left: O_NOFOLLOW refuses one put in its place meanwhile, and
    # O_NONBLOCK opens a FIFO at once (refused below) rather than wait for a writer.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise Unreadable("the file is no longer in its dataset root") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise Unreadable("the file was replaced by a symlink while it was opened") from None
        raise Unreadable(f"the file could not be read: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def lines(
    handle: BinaryIO, *, hasher: hashlib._Hash | None = None, cap: int = LINE_CAP_BYTES
) -> Iterator[tuple[int, str | RowProblem]]:
    """(row number, its text or why it cannot be read) for every line of `handle`, from 1; every
    byte read goes through `hasher` when one is given. A line over `cap` bytes is a LineTooLong."""
    row = 0
    while raw := handle.readline(cap + 1):
        row += 1
        if hasher is not None:
            hasher.update(raw)
        if len(raw) > cap and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(_SKIP_CHUNK)
                if hasher is not None:
                    hasher.update(raw)
            yield row, LineTooLong(row, f"the row is longer than {_size(cap)}")
            continue
        yield row, decode_line(raw, row=row)


def _size(cap: int) -> str:
    if cap == LINE_CAP_BYTES:
        return f"{ROW_MAX_CHARS:,} characters"
    return f"{cap:,} bytes"


def dataset_lines(dataset: DatasetFile) -> Iterator[tuple[int, str | RowProblem]]:
    """`lines` of the dataset's file (opened by open_dataset, closed when the iteration ends or is
    dropped); Unreadable when it may not be read."""
    with open_dataset(dataset) as handle:
        yield from lines(handle)
