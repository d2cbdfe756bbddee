"""How much a load may take before the worker stops it, and whether the host can take it at all.

Pure: the device worker's load guard (apps.serving.runtimes.guard) reads what a load has taken so
far (its process's resident memory on a device that keeps weights in host memory, torch's allocated
memory on a GPU) against `limit_bytes`, and says why it ended with `overrun`; the worker asks
`host_shortfall` before a load starts on a device whose weights live in host memory. Each answers
with the sentence the placement records.
"""

from __future__ import annotations

from apps.core.domain.units import format_bytes
from apps.fleet.domain.capacity import MiB

# Never less than this above the reservation: a small model's load also pays for the library's own
# objects and the allocator's slack (the demo LM's 0.7 MiB of weights took 8 MiB of resident memory),
# which a share of a few MiB would not cover.
MIN_MARGIN_BYTES = 256 * MiB
# A sampled load is stopped only once this many samples in a row find it past its limit: the meters
# count the whole process, and a request's passing allocation must not end somebody else's load.
TRIP_AFTER_SAMPLES = 3


def limit_bytes(reserved_bytes: int, *, margin: float) -> int:
    """What a load holding `reserved_bytes` may take before it is stopped: its reservation plus
    `margin` of it (MOC_LOAD_GUARD_MARGIN), and at least MIN_MARGIN_BYTES more."""
    if margin < 0:
        raise ValueError(f"the load guard's margin must be 0 or more, not {margin}")
    return reserved_bytes + max(int(reserved_bytes * margin), MIN_MARGIN_BYTES)


def overrun(
    taken_bytes: int,
    *,
    reserved_bytes: int,
    limit: int,
    stopped: bool,
    requests_beside: int = 0,
    device_wide: bool = False,
) -> str:
    """Why a load that took `taken_bytes`, past `limit`, failed: `stopped` when it was stopped in the
    middle, else it ran to the end (one native call) and what it built was dropped. The figure is an
    upper bound where it also counts requests that ran beside the load in its worker, or the whole
    device (`device_wide`: other processes, the runtime's one-time set-up), and says so."""
    others = []
    if device_wide:
        others.append("other processes on the device")
    if requests_beside:
        others.append(f"{requests_beside} request{'' if requests_beside == 1 else 's'} running beside it")
    counted = f"; the figure counts {' and '.join(others)} too" if others else ""
    ending = "it was stopped" if stopped else "what it built was dropped"
    return (
        f"took {format_bytes(taken_bytes)}, over its {format_bytes(reserved_bytes)} reservation"
        f" (a load may take up to {format_bytes(limit)}){counted}, so {ending}. Validate the version"
        " again, or raise MOC_LOAD_GUARD_MARGIN if that size is genuine"
    )


def host_shortfall(
    available_bytes: int, *, reserved_bytes: int, promised_bytes: int = 0, weights_bytes: int = 0
) -> str | None:
    """Why a load onto a device that keeps weights in host memory cannot start, or None when the
    host's available memory, less `promised_bytes` to other loads on the host not yet done, can take
    its reservation. Weights on disk larger than all the host has available (`weights_bytes`) are
    refused whatever the reservation says: mapping them would fail with ENOMEM, or page the host to
    death, and a reservation below them was measured where it does not hold."""
    if weights_bytes > available_bytes:
        return (
            f"its weights are {format_bytes(weights_bytes)} on disk, more than the"
            f" {format_bytes(available_bytes)} of memory the host has available; the device keeps its"
            " weights in host memory"
        )
    if reserved_bytes <= available_bytes - promised_bytes:
        return None
    promised = (
        f", {format_bytes(promised_bytes)} of it promised to other loads not yet done on its devices,"
        if promised_bytes
        else ""
    )
    return (
        f"the host has {format_bytes(available_bytes)} of memory available{promised} and this load"
        f" reserves {format_bytes(reserved_bytes)}; the device keeps its weights in host memory"
    )
