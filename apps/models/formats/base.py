"""What every format reader returns: a file's header, as checks plus a small summary.

Pure Python, no Django: the readers run inside scans and validation tasks, and their
tests feed them hostile files without a database.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import IO


class FormatError(Exception):
    """A file breaks its format's rules; read_header turns it into a fail check."""

    def __init__(self, detail: str, check: str = "readable") -> None:
        super().__init__(detail)
        self.detail = detail
        self.check = check


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
