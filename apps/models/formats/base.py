"""What every format reader returns: a file's header, as checks plus a small summary.

Pure Python, no Django: the readers run inside scans and validation tasks, and their
tests feed them hostile files without a database.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from apps.models.domain.formats import WEIGHT_FORMATS, FileFormat, format_by_name

GGUF_MAGIC = b"GGUF"
ZIP_MAGIC = b"PK\x03\x04"  # what torch.load itself checks to pick its zip reader
PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(6))  # a pickle's opening PROTO opcode


class FormatError(Exception):
    """A file breaks its format's rules; read_header turns it into a fail check."""

    def __init__(self, detail: str, check: str = "readable") -> None:
        super().__init__(detail)
        self.detail = detail
        self.check = check


def magic(path: Path) -> bytes:
    """A file's first four bytes (fewer where it is shorter, none where it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4)
    except OSError:
        return b""


def model_file(path: Path) -> FileFormat | None:
    """The format of a file that is a model's weights of its own, or None for raw data (such as an
    ONNX model's external data). By its suffix (SUFFIX_FORMATS), and, for the names pickles share
    with raw data (an exporter may write external data as weights.bin), by its first bytes too:
    a GGUF file, a torch.save zip or a pickle is a model; anything else is data."""
    fmt = format_by_name(Path(path).name)
    if fmt != FileFormat.PYTORCH:
        return fmt if fmt in WEIGHT_FORMATS else None
    head = magic(path)
    if head == GGUF_MAGIC:
        return FileFormat.GGUF
    return FileFormat.PYTORCH if head == ZIP_MAGIC or head[:2] in PICKLE_PROTOCOLS else None


def inside_roots(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the path, symlinks followed, lies under one of the (resolved) roots."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    return any(real.is_relative_to(root) for root in _resolved(tuple(str(r) for r in roots)))


@functools.lru_cache(maxsize=32)
def _resolved(roots: tuple[str, ...]) -> tuple[Path, ...]:
    """The roots with their own symlinks resolved, once: a scan asks for every file, and
    resolving the roots each time was a quarter of a cold scan."""
    resolved = []
    for root in roots:
        try:
            resolved.append(Path(root).resolve())
        except (OSError, RuntimeError):  # a root that is a symlink loop holds nothing
            continue
    return tuple(resolved)


WINDOW_BYTES = 64 << 10


class WindowedFile:
    """A file read through one small window at a time: the binary readers (GGUF, ONNX) ask
    for the bytes at `pos` and get an offset into `buf`, so no claimed length ever makes
    them read, or hold, more than a window and the bytes actually asked for."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle = handle
        self.size = size
        self.pos = 0
        self.buf = b""
        self.start = 0  # the file position buf begins at

    def window(self, n: int) -> int:
        """Where the n bytes at `pos` lie in `buf`, reading them in if they are not there."""
        offset = self.pos - self.start
        if offset < 0 or offset + n > len(self.buf):
            self.handle.seek(self.pos)
            self.buf = self.handle.read(max(n, WINDOW_BYTES))
            self.start = self.pos
            offset = 0
            if len(self.buf) < n:
                raise FormatError(f"the file shrank while being read, at byte {self.pos:,}", "readable")
        return offset
