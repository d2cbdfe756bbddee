"""Text from outside MOC (file and folder names, headers) made safe to show.

A file name may hold a newline, another control character, a right-to-left override or a
zero-width character; printed raw it breaks a table row or a log line, or shows a name other
than the one on disk. `printable` writes each such character as a visible escape ("\\n",
"\\x1b", "\\u202e"), the way Python's repr does. A backslash is left as it is, so that text
already made printable (a stored check detail, then shown on a page) comes out unchanged.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control characters, and the invisible formatting and separator characters (bidi overrides,
# zero-width joiners, U+2028/2029) that change how the text around them reads.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shown_as_is(char: str) -> bool:
    return unicodedata.category(char) not in _HIDDEN


def printable(text: str) -> str:
    """`text` with every hidden or control character written as a visible escape; idempotent."""
    if all(_shown_as_is(char) for char in text):
        return text
    return "".join(char if _shown_as_is(char) else _escaped(char) for char in text)


def counted(n: int, noun: str, plural: str = "") -> str:
    """`n` with its noun in the right number: "1 file", "2 files", "1,024 tensors"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
