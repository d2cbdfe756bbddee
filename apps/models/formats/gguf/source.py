"""A GGUF file read forward through a small window, every length checked before it is read.

A hostile header can claim strings and arrays of any size; this is the one place the bytes
are read, so the check against the bytes left lives here, once.
"""

from __future__ import annotations

import struct
from typing import IO, Any

from apps.models.formats.base import FormatError, WindowedFile

MAX_STRING = 1 << 20
U64 = struct.Struct("<Q")


class Source(WindowedFile):
    """Reads a file forward through a small window; a skip moves the position without reading.

    Every read is checked against the bytes left first, so a claimed length can never make
    the reader allocate more than the file holds. `stage` names the check a truncation fails.
    """

    def __init__(self, handle: IO[bytes], size: int) -> None:
        super().__init__(handle, size)
        self.stage = "gguf_header"

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.left:
            raise FormatError(
                f"{what} needs {n:,} bytes at byte {self.pos:,}, but the file ends at byte {self.size:,}",
                self.stage,
            )

    def _fill(self, n: int, what: str) -> int:
        """Where the n bytes at the position lie in the window, once the file is known to hold them."""
        self.need(n, what)
        return self.window(n)

    def unpack(self, layout: struct.Struct, what: str) -> tuple[Any, ...]:
        offset = self._fill(layout.size, what)
        self.pos += layout.size
        return layout.unpack_from(self.buf, offset)

    def take(self, n: int, what: str) -> bytes:
        offset = self._fill(n, what)
        self.pos += n
        return self.buf[offset : offset + n]

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def length(self, cap: int, what: str) -> int:
        """A string's u64 length prefix, refused past `cap`."""
        length: int
        (length,) = self.unpack(U64, f"the length of {what}")
        if length > cap:
            raise FormatError(f"{what} claims {length:,} bytes; the cap is {cap:,}", self.stage)
        return length

    def string(self, cap: int, what: str) -> str:
        return self.take(self.length(cap, what), what).decode("utf-8", errors="replace")

    def skip_string(self, cap: int, what: str) -> int:
        """Skip a string without reading it; its length."""
        length = self.length(cap, what)
        self.skip(length, what)
        return length

    def skip_strings(self, count: int, what: str) -> None:
        """Skip `count` length-prefixed strings: a vocabulary walk, the one hot loop of a read.

        The same checks as unpack + skip, without their calls for every one of 100k+ items.
        """
        unpack, size = U64.unpack_from, self.size
        for index in range(count):
            offset = self.pos - self.start
            if offset < 0 or offset + 8 > len(self.buf):
                offset = self._fill(8, what)
            (length,) = unpack(self.buf, offset)
            if length > MAX_STRING:
                raise FormatError(
                    f"{what}[{index}] claims {length:,} bytes; the cap is {MAX_STRING:,}", self.stage
                )
            end = self.pos + 8 + length
            if end > size:
                raise FormatError(
                    f"{what}[{index}] runs past the end of the file at byte {size:,}", self.stage
                )
            self.pos = end
