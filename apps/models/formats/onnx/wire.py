"""The protobuf wire format, walked field by field through a small window of the file.

Knows tags, varints and lengths, not ONNX: model.py says what the fields mean. Every length
is checked against the end of its enclosing message, and nesting depth is capped, before
anything is read, so a hostile file cannot make the walk allocate or recurse without bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from apps.models.formats.base import FormatError, WindowedFile

MAX_DEPTH = 64
MAX_STRING = 64 << 10

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


class Source(WindowedFile):
    """Reads a file through a small window; a skip moves the position without reading."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        super().__init__(handle, size)
        self.depth = 0

    def varint(self, end: int, what: str) -> int:
        """A base-128 varint of at most 10 bytes, all before `end`."""
        available = min(10, end - self.pos)
        offset = self.window(available)
        result = 0
        for index in range(available):
            byte = self.buf[offset + index]
            result |= (byte & 0x7F) << (7 * index)
            if byte < 0x80:
                if index == 9 and byte > 1:
                    break
                self.pos += index + 1
                return result
        else:
            if available < 10:
                raise FormatError(
                    f"{what}: the varint at byte {self.pos:,} runs past the end of its message",
                    "onnx_structure",
                )
        raise FormatError(f"{what}: malformed varint at byte {self.pos:,}", "onnx_structure")

    def take(self, n: int) -> bytes:
        offset = self.window(n)
        self.pos += n
        return self.buf[offset : offset + n]

    def fields(self, end: int, message: str) -> Iterator[tuple[int, int, int]]:
        """Each field of the message ending at `end`: (number, wire type, value or payload length).

        For a length-delimited field the position is at its payload while the caller handles
        it, and moves to the payload's end afterwards, whether or not the caller read it.
        """
        if end > self.size:
            raise FormatError(
                f"{message} claims to end at byte {end:,}, but the file ends at byte {self.size:,}",
                "onnx_structure",
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormatError(f"messages nest deeper than {MAX_DEPTH} levels", "onnx_structure")
        while self.pos < end:
            tag = self.varint(end, message)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise FormatError(f"{message}: field number 0 at byte {self.pos:,}", "onnx_structure")
            if wire == VARINT:
                yield number, wire, self.varint(end, message)
            elif wire in (FIXED64, FIXED32):
                width = 8 if wire == FIXED64 else 4
                if self.pos + width > end:
                    raise FormatError(f"{message}: field {number} runs past its message", "onnx_structure")
                self.pos += width
                yield number, wire, 0  # no field read here is fixed-width: only its presence counts
            elif wire == LEN:
                length = self.varint(end, message)
                payload_end = self.pos + length
                if payload_end > end:
                    raise FormatError(
                        f"{message}: field {number} claims {length:,} bytes at byte {self.pos:,}, "
                        f"past the end of its message at byte {end:,}",
                        "onnx_structure",
                    )
                yield number, wire, length
                self.pos = payload_end
            else:
                raise FormatError(
                    f"{message}: field {number} has unsupported wire type {wire} at byte {self.pos:,}",
                    "onnx_structure",
                )
        self.depth -= 1

    def text(self, length: int, what: str) -> str:
        if length > MAX_STRING:
            raise FormatError(f"{what} is {length:,} bytes; the cap is {MAX_STRING:,}", "onnx_structure")
        return self.take(length).decode("utf-8", errors="replace")


def expect(wire: int, expected: int, what: str) -> None:
    if wire != expected:
        raise FormatError(f"{what} has wire type {wire}, not {expected}", "onnx_structure")


def signed(value: int) -> int:
    """Protobuf writes negative int32/int64 values as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value
