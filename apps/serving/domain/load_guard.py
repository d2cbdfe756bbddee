"""How much a load may take before the worker stops it, and whether the host can take it at all.

Pure: the device worker's load guard (apps.serving.runtimes.guard) reads what a load has taken so
far (its process's resident memory on a device that keeps weights in host memory, torch's allocated
memory on a GPU) and asks `overrun`; the worker asks `host_shortfall` before a load starts on a
device whose weights live in host memory. Each answers with the sentence the placement records.
"""

from __future__ import annotations

from apps.core.domain.units import format_bytes

MiB = 1024 * 1024
# Never less than this above the reservation: a small model's load also pays for the library's own
# objects and the allocator's slack (the demo LM's 0.7 MiB of weights took 8 MiB of resident memory),
# which a share of a few MiB would not cover.
MIN_MARGIN_BYTES = 256 * MiB


def limit_bytes(reserved_bytes: int, *, margin: float) -> int:
    """What a load holding `reserved_bytes` may take before it is stopped: its reservation plus
    `margin` of it (MOC_LOAD_GUARD_MARGIN), and at least MIN_MARGIN_BYTES more."""
    if margin < 0:
        raise ValueError(f"the load guard's margin must be 0 or more, not {margin}")
    return reserved_bytes + max(int(reserved_bytes * margin), MIN_MARGIN_BYTES)


def overrun(taken_bytes: int, *, reserved_bytes: int, limit: int) -> str | None:
    """Why a load that has taken `taken_bytes` so far must stop, or None while it is within `limit`."""
    if taken_bytes <= limit:
        return None
    return (
        f"took {format_bytes(taken_bytes)}, over its {format_bytes(reserved_bytes)} reservation"
        f" (a load may take up to {format_bytes(limit)}); stopped, and what it took was freed"
    )


def host_shortfall(available_bytes: int, *, reserved_bytes: int) -> str | None:
    """Why a load onto a device that keeps weights in host memory cannot start, or None when the
    host's available memory can take its reservation."""
    if reserved_bytes <= available_bytes:
        return None
    return (
        f"the host has {format_bytes(available_bytes)} of memory available and this load reserves"
        f" {format_bytes(reserved_bytes)}; the device keeps its weights in host memory"
    )
