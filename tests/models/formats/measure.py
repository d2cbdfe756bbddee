"""What the binary-format tests look at: the failed checks, and what a read cost."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

from apps.models.domain.headers import FileHeader

# A hostile file may cost a few windows of reading, never the sizes it claims.
PEAK_BYTES = 1 << 20
SECONDS = 1.0


def fails(header: FileHeader) -> dict[str, str]:
    """The failed checks by name, with their reasons."""
    return {check.check: check.detail for check in header.checks if check.status == "fail"}


def measured(read: Callable[[], FileHeader]) -> tuple[FileHeader, float, int]:
    """The header `read` returns, the seconds it took and its peak of traced memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        header = read()
        return header, time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
