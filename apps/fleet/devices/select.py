"""From MOC_DEVICES to a running backend, with one line for the log that says why this one.

A node whose GPUs cannot be reached still works: it offers its CPU instead, and the reason
is logged, because a worker that dies over a missing driver serves nothing at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from apps.core.domain.units import format_bytes

from .base import BackendUnavailable, DeviceBackend, SimLoad
from .cpu import CpuBackend
from .nvml import NvmlBackend
from .sim import SimBackend

KINDS = ("auto", "nvml", "cpu", "sim")
MAX_SIM_COUNT = 64
UNITS = {"gib": 1024**3, "mib": 1024**2, "gb": 1000**3}
_GROUP = re.compile(r"(?:(\d+)\s*x\s*)?(\d+)\s*(gib|mib|gb)", re.IGNORECASE)
EXAMPLE = "e.g. MOC_DEVICES=sim:2x24GiB,1x80GiB"


def parse_spec(spec: str) -> tuple[str, list[tuple[int, int]]]:
    """MOC_DEVICES as (kind, [(count, bytes), …]); the sizes are for "sim" only."""
    kind, colon, sizes = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(f"MOC_DEVICES={spec!r}: the kind must be one of {', '.join(KINDS)}")
    if kind != "sim":
        if colon:
            raise ValueError(f"MOC_DEVICES={spec!r}: only sim takes sizes ({EXAMPLE})")
        return kind, []
    if not sizes.strip():
        raise ValueError(f"MOC_DEVICES={spec!r}: say how many simulated GPUs of what size ({EXAMPLE})")
    groups = []
    for part in sizes.split(","):
        match = _GROUP.fullmatch(part.strip())
        if not match:
            raise ValueError(
                f"MOC_DEVICES={spec!r}: {part.strip()!r} is not COUNTxSIZE in GiB, MiB or GB ({EXAMPLE})"
            )
        count, size, unit = int(match[1] or 1), int(match[2]), UNITS[match[3].lower()]
        if not 1 <= count <= MAX_SIM_COUNT:
            raise ValueError(f"MOC_DEVICES={spec!r}: a count must be from 1 to {MAX_SIM_COUNT}, not {count}")
        if size == 0:
            raise ValueError(f"MOC_DEVICES={spec!r}: a simulated GPU needs some memory")
        groups.append((count, size * unit))
    return kind, groups


def open_backend(
    spec: str,
    *,
    node_name: str,
    cpu_capacity_share: float,
    sim_load: Callable[[], Mapping[int, SimLoad]] | None = None,
    nvml_module: ModuleType | Any | None = None,
) -> tuple[DeviceBackend, str]:
    """The backend MOC_DEVICES asks for, or the CPU when NVML cannot run; and why."""
    kind, groups = parse_spec(spec)
    said = f"MOC_DEVICES={spec.strip()}"
    if kind == "sim":
        backend = SimBackend(node_name, groups, load=sim_load, host_share=cpu_capacity_share)
        described = ", ".join(f"{count}x{size / 1024**3:g} GiB" for count, size in groups)
        reason = f"{said}: {_count(len(backend.devices()), 'simulated GPU')} ({described})"
        if backend.capped():
            cap = format_bytes(backend.host_cap_bytes)
            reason += (
                f"; their models live in host memory, so together they offer at most"
                f" {cpu_capacity_share:.0%} of the host's RAM, {cap} each"
            )
        return backend, reason
    cpu_note = f"offering the CPU as one device ({cpu_capacity_share:.0%} of RAM as capacity)"
    if kind == "cpu":
        return CpuBackend(node_name, capacity_share=cpu_capacity_share), f"{said}: {cpu_note}"
    try:
        backend = NvmlBackend(node_name, nvml_module=nvml_module)
    except BackendUnavailable as exc:
        return CpuBackend(
            node_name, capacity_share=cpu_capacity_share
        ), f"{said}: NVML unavailable ({exc}); {cpu_note}"
    return backend, f"{said}: {_count(len(backend.devices()), 'NVIDIA GPU')} through NVML"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
