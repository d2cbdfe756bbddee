"""Text from outside MOC (file and folder names, headers) made safe to show.

A file name may hold a newline or another control character; printed raw it breaks a table row
or a log line and hides what is really on disk. `printable` writes each one as a visible escape
("\\n", "\\x1b"), the way Python's repr does, so the page shows what the disk holds.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_control(char: str) -> bool:
    """C0 and C1 control characters and DEL: the ones a terminal or a table would act on."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def printable(text: str) -> str:
    """`text` with every control character written as a visible escape; other text unchanged."""
    if not any(is_control(char) for char in text):
        return text
    return "".join(_NAMED.get(char, f"\\x{ord(char):02x}") if is_control(char) else char for char in text)
