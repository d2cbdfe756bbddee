"""How much memory a load took and an unload gave back: the figures the VRAM estimator learns from.

The rule, by device and runtime:

- cuda, torch runtimes (transformers, peft): `torch.cuda.memory_allocated(device)` after minus
  before, with the device synchronised: exactly the tensors the load left behind, not the
  allocator's cache and not the CUDA context (created before the first reading).
- cuda, runtimes with their own allocator (onnxruntime, llama.cpp): the fall in the device's free
  memory (`torch.cuda.mem_get_info`), floored at the model file's size. This sees the whole
  device, so it is only as good as the device is quiet; one worker per device keeps it close.
  Without torch in the worker there is no reading, and the file size stands in.
- cpu: the process's resident set (psutil) after minus before, floored at the bytes of the
  model's parameters and buffers (torch) or the model file's size (onnxruntime, llama.cpp).
  RSS is process-wide and allocators keep freed pages, so this is best effort: a worker's first
  load also pays a few MB of one-time library set-up, and a later load may reuse pages an
  unloaded model left, which is what the floor is for.

The floor is what a load cannot have taken less of: its weights are resident after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil

RSS, TORCH, DEVICE = "rss", "torch", "device"
METER_WORDS = {
    RSS: "process resident memory",
    TORCH: "torch's allocated device memory",
    DEVICE: "the device's free memory",
}
# Meters that count other processes too (and a runtime's one-time CUDA set-up): what they say of one
# load is an upper bound. RSS and torch's allocator count this process alone, every thread of it.
DEVICE_WIDE = frozenset({DEVICE})


@dataclass(frozen=True, slots=True)
class Snapshot:
    meter: str
    value: int | None  # None: nothing to read it with (a device meter without torch)


def meter_for(device: str, *, torch_allocator: bool) -> str:
    """The meter a runtime's loads on `device` are measured with (see the module's rule)."""
    if not device.startswith("cuda"):
        return RSS
    return TORCH if torch_allocator else DEVICE


def snapshot(device: str, meter: str) -> Snapshot:
    """The meter's reading once the device has finished what was queued on it."""
    if meter != RSS and (torch := _torch()) is not None:
        torch.cuda.synchronize(device)
    return Snapshot(meter, reading(device, meter))


def reading(device: str, meter: str) -> int | None:
    """The meter's reading now, without waiting for the device: what the load guard samples from its
    own thread while the load's thread runs (torch counts allocations as they are made)."""
    if meter == RSS:
        return int(psutil.Process().memory_info().rss)
    torch = _torch()
    if torch is None:
        return None
    if meter == TORCH:
        return int(torch.cuda.memory_allocated(device))
    free, total = torch.cuda.mem_get_info(device)
    return int(total - free)


def _torch() -> Any:
    try:
        import torch  # deferred: heavy, and absent on a worker without the demo extra
    except ImportError:
        return None
    return torch


def load_cost(before: Snapshot, after: Snapshot, *, floor: int) -> int:
    """What a load took by the rule above: the meter's rise, never less than `floor`."""
    if before.value is None or after.value is None:
        return floor
    return max(floor, after.value - before.value)


def freed(before: Snapshot, after: Snapshot) -> int | None:
    """The meter's fall over an unload; None where it cannot be read."""
    if before.value is None or after.value is None:
        return None
    return max(0, before.value - after.value)


def release_cached(device: str) -> None:
    """Hand what an unload or a stopped load freed back to whoever counts it: torch's cached blocks
    to the driver on a GPU; on the CPU, the C heap's free pages to the host (glibc keeps them, and
    after a few large frees it stops mapping big blocks apart, so a freed model would otherwise stay
    in the worker's RSS and out of the host's available memory the next load is checked against)."""
    torch = sys.modules.get("torch")
    if device.startswith("cuda"):
        if torch is not None:
            torch.cuda.empty_cache()
    elif (trim := _malloc_trim()) is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def storages(tensors: Iterable[Any]) -> dict[int, int]:
    """The storages behind `tensors` by address, with their bytes: tied and viewed weights share one."""
    found: dict[int, int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        found[storage.data_ptr()] = storage.nbytes()
    return found


def tensor_bytes(tensors: Iterable[Any], *, besides: dict[int, int] | None = None) -> int:
    """Bytes of the storages behind `tensors`, each counted once, less those in `besides` (a base's)."""
    return sum(n for ptr, n in storages(tensors).items() if not besides or ptr not in besides)
