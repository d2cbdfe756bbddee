"""What a freed model gives back on the CPU: the C heap's pages go back to the host."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from apps.serving.runtimes import memory

# In a fresh interpreter, so its allocator settings touch no other test. glibc trims the heap's
# top on free only past M_TRIM_THRESHOLD; a worker that has freed a few large blocks raises that
# threshold on its own (and stops mapping big blocks apart), which the mallopt call stands for.
# Heap blocks freed then stay in the process's RSS until someone asks for them to be trimmed.
_FREED_BUT_HELD = textwrap.dedent(
    """
    import ctypes, psutil
    from apps.serving.runtimes import memory

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    M_TRIM_THRESHOLD = -1
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    blocks = [libc.malloc(64 * 1024) for _ in range(4096)]
    for block in blocks:
        libc.memset(block, 1, 64 * 1024)
    for block in blocks:
        libc.free(block)
    held = psutil.Process().memory_info().rss
    memory.release_cached("cpu")
    print(held - psutil.Process().memory_info().rss)
    """
)


@pytest.mark.skipif(memory._malloc_trim() is None, reason="the C library has no malloc_trim")
def test_releasing_on_the_cpu_hands_freed_heap_pages_back_to_the_host() -> None:
    run = subprocess.run([sys.executable, "-c", _FREED_BUT_HELD], capture_output=True, text=True, check=True)

    assert int(run.stdout) > 128 * 1024**2  # of the 256 MiB freed
