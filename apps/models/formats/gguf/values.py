"""GGUF metadata values: scalars, strings cut to what the pages show, arrays cut to their head.

Big arrays (tokenizer vocabularies, 100k+ strings) are skipped past, keeping only their
length and first items, so a value never costs more memory than its head.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from apps.models.formats.base import FormatError
from apps.models.formats.gguf.source import MAX_STRING, U64, Source
from apps.models.formats.gguf.tables import ARRAY, SCALARS, STRING

MAX_ARRAY = 10_000_000
MAX_ARRAY_DEPTH = 4
# First items kept of an array; the rest is skipped, only its length is recorded. Numbers
# keep more, enough for per-layer values (head counts) of the keys that are kept at all.
ARRAY_HEAD = 8
NUMBERS_HEAD = 1024
SHOWN_STRING = 200
_ARRAY_PREFIX = struct.Struct("<IQ")


@dataclass(frozen=True, slots=True)
class ArrayValue:
    """A metadata array as kept: its element type, full length and first items only."""

    type: str
    length: int
    head: tuple[Any, ...]


def read_value(src: Source, vtype: int, what: str, *, depth: int, keep: bool) -> Any:
    """The value of type `vtype` at the position; None, skipped past, unless `keep`."""
    if vtype in SCALARS:
        _, layout = SCALARS[vtype]
        if not keep:
            src.skip(layout.size, what)
            return None
        return src.unpack(layout, what)[0]
    if vtype == STRING:
        if not keep:
            src.skip_string(MAX_STRING, what)
            return None
        return src.string(MAX_STRING, what)[:SHOWN_STRING]
    if vtype != ARRAY:
        raise FormatError(f"{what} has unknown type {vtype}", "gguf_metadata")
    if depth >= MAX_ARRAY_DEPTH:
        raise FormatError(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH}", "gguf_metadata")
    etype, length = src.unpack(_ARRAY_PREFIX, what)
    if length > MAX_ARRAY:
        raise FormatError(f"{what} claims {length:,} items; the cap is {MAX_ARRAY:,}", "gguf_metadata")
    if etype in SCALARS:
        name, layout = SCALARS[etype]
        src.need(length * layout.size, f"{what} ({length:,} {name} items)")
        kept = min(length, NUMBERS_HEAD) if keep else 0
        head = tuple(src.unpack(layout, what)[0] for _ in range(kept))
        src.skip((length - kept) * layout.size, what)
        return ArrayValue(name, length, head)
    if etype == STRING:
        return ArrayValue("string", length, _strings(src, length, what, keep=keep))
    if etype != ARRAY:
        raise FormatError(f"{what} is an array of unknown type {etype}", "gguf_metadata")
    # Each inner array takes at least its 12-byte prefix.
    src.need(length * _ARRAY_PREFIX.size, f"{what} ({length:,} arrays)")
    items = []
    for index in range(length):
        item = read_value(src, etype, f"{what}[{index}]", depth=depth + 1, keep=keep and index < ARRAY_HEAD)
        if keep and index < ARRAY_HEAD:
            items.append(item)
    return ArrayValue("array", length, tuple(items))


def _strings(src: Source, length: int, what: str, *, keep: bool) -> tuple[str, ...]:
    """Walk an array of strings (a vocabulary: 100k+ of them) keeping only the first few."""
    # Each string takes at least its 8-byte length.
    src.need(length * U64.size, f"{what} ({length:,} strings)")
    head = []
    for _ in range(min(length, ARRAY_HEAD) if keep else 0):
        head.append(src.string(MAX_STRING, what)[:SHOWN_STRING])
    src.skip_strings(length - len(head), what)
    return tuple(head)
