"""Simulated GPUs for demos and tests, whose figures follow what MOC put on them.

No randomness: given the loads and the sampling times, the figures are always the same, so
a test can say what a device shows after a model is placed or a job runs. Memory answers at
once; utilisation settles in a few seconds and temperature in about a minute, as on real cards,
so charts show a job starting and ending rather than a square wave.

A simulated GPU has no memory of its own: the models MOC loads onto it live in the host's RAM.
So the node's simulated GPUs together offer no more than a CPU device would (a share of the host's
RAM, split evenly among them), however large the cards they simulate, and each reading carries the
host's available memory beside the simulated figures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil

from apps.fleet.domain.capacity import GiB, MiB, capped_by_host, gpu_capacity, host_capacity
from apps.fleet.domain.kinds import Backend, DeviceKind

from .base import DeviceInfo, DeviceReading, NodeInfo, SimLoad, made_up_uuid
from .cpu import host_memory, host_node_info

log = logging.getLogger(__name__)

CONTEXT_BYTES = 300 * MiB  # the CUDA context a process holds as soon as it uses the GPU
UTIL_PER_JOB = 95.0  # a running job keeps a GPU nearly saturated
UTIL_PER_REQUEST_S = 2.0  # serving: 50 requests/s saturate a device
MEM_UTIL_SHARE = 0.6  # memory bandwidth busy per unit of compute busy (inference is memory-bound)
UTIL_TAU_S = 2.0
TEMPERATURE_TAU_S = 30.0
IDLE_C = 32.0
C_PER_UTIL = 0.45  # degrees above idle per percent of utilisation
IDLE_POWER_SHARE = 0.2
# Power limit by memory size, after the cards of each size (T4, L4/A10/L40S, A100/H100, B200).
POWER_LIMITS_W = ((16 * GiB, 70.0), (48 * GiB, 300.0), (96 * GiB, 700.0))
LARGEST_POWER_LIMIT_W = 1000.0
SM_CLOCK_MHZ = (345, 1980)  # idle, boost
MEM_CLOCK_MHZ = (405, 2619)
PCIE_RX_PER_REQUEST = 64 * 1024  # the request's input, host to device
PCIE_TX_PER_REQUEST = 16 * 1024  # its output, device to host
IDLE = SimLoad()


def power_limit_w(total_bytes: int) -> float:
    return next((watts for size, watts in POWER_LIMITS_W if total_bytes <= size), LARGEST_POWER_LIMIT_W)


def _settle(value: float, target: float, dt: float, tau: float) -> float:
    """A first-order lag: how far `value` moves toward `target` in dt seconds."""
    return value + (target - value) * (1.0 - math.exp(-dt / tau))


@dataclass(slots=True)
class _State:
    util: float = 0.0
    temperature: float = IDLE_C
    failure: str = ""


class SimBackend:
    name = Backend.SIM.value

    def __init__(
        self,
        node_name: str,
        specs: list[tuple[int, int]],
        *,
        load: Callable[[], Mapping[int, SimLoad]] | None = None,
        host_share: float = 0.5,
        host_ram_bytes: int | None = None,
        host_available: Callable[[], int] | None = None,
    ) -> None:
        sizes = [size for count, size in specs for _ in range(count)]
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"simulated GPUs need at least one device of a positive size, not {specs}")
        ram = host_memory().total_bytes if host_ram_bytes is None else host_ram_bytes
        # The most one simulated GPU offers: its even part of what a CPU device on this host would.
        self.host_cap_bytes = host_capacity(ram, host_share, devices=len(sizes))
        self._host_available = host_available or (lambda: host_memory().available_bytes)
        self._devices = [
            DeviceInfo(
                index=index,
                uuid=made_up_uuid("SIM", node_name, index),
                name=f"Simulated GPU {size / GiB:g} GiB",
                kind=DeviceKind.GPU.value,
                simulated=True,
                memory_total_bytes=size,
                capacity_bytes=min(gpu_capacity(size), self.host_cap_bytes),
            )
            for index, size in enumerate(sizes)
        ]
        self._states = [_State() for _ in sizes]
        self._load = load
        self._loads: Mapping[int, SimLoad] = {}
        self._last: float | None = None

    def node_info(self) -> NodeInfo:
        return host_node_info(backend=self.name, driver_version="simulated")

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def fail(self, index: int, message: str = "simulated failure") -> None:
        """Make a device unreadable, so tests and demos can show an unhealthy GPU."""
        self._states[index].failure = message

    def recover(self, index: int) -> None:
        self._states[index].failure = ""

    def sample(self, now: float) -> list[DeviceReading]:
        if self._load is not None:
            try:
                self._loads = self._load()
            except Exception:
                # The figures carry on from the last loads known: a database hiccup in the
                # agent's load callable must not read as every simulated GPU failing.
                log.exception("simulated GPUs: reading what MOC placed failed; keeping the last loads")
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        try:
            host_free: int | None = self._host_available()
        except (OSError, psutil.Error):
            host_free = None
        return [
            self._step(device, state, self._loads.get(device.index, IDLE), dt, host_free)
            for device, state in zip(self._devices, self._states, strict=True)
        ]

    def capped(self) -> list[DeviceInfo]:
        """The devices that offer less than the card they simulate would, for want of host memory."""
        return [
            d
            for d in self._devices
            if capped_by_host(
                simulated=d.simulated,
                memory_total_bytes=d.memory_total_bytes,
                capacity_bytes=d.capacity_bytes,
            )
        ]

    def close(self) -> None:
        """Nothing to release."""

    def _step(
        self, device: DeviceInfo, state: _State, load: SimLoad, dt: float, host_free: int | None
    ) -> DeviceReading:
        target = min(100.0, load.running_jobs * UTIL_PER_JOB + load.requests_per_s * UTIL_PER_REQUEST_S)
        state.util = _settle(state.util, target, dt, UTIL_TAU_S)
        state.temperature = _settle(
            state.temperature, IDLE_C + C_PER_UTIL * state.util, dt, TEMPERATURE_TAU_S
        )
        total = device.memory_total_bytes
        if state.failure:
            return DeviceReading.failed(device.index, device.uuid, total, state.failure)
        in_use = load.placed_bytes > 0 or load.running_jobs > 0
        used = min(total, (CONTEXT_BYTES if in_use else 0) + load.placed_bytes)
        limit = power_limit_w(total)
        idle_w = IDLE_POWER_SHARE * limit
        busy = state.util >= 1.0
        return DeviceReading(
            index=device.index,
            uuid=device.uuid,
            gpu_util=round(state.util, 1),
            mem_util=round(state.util * MEM_UTIL_SHARE, 1),
            mem_total_bytes=total,
            mem_used_bytes=used,
            mem_free_bytes=total - used,
            temperature_c=round(state.temperature, 1),
            power_w=round(idle_w + state.util / 100.0 * (limit - idle_w), 1),
            power_limit_w=limit,
            sm_clock_mhz=SM_CLOCK_MHZ[busy],
            mem_clock_mhz=MEM_CLOCK_MHZ[busy],
            fan_pct=None,  # datacenter cards have no fan of their own
            pcie_tx_bytes_s=int(load.requests_per_s * PCIE_TX_PER_REQUEST),
            pcie_rx_bytes_s=int(load.requests_per_s * PCIE_RX_PER_REQUEST),
            ecc_corrected=0,
            ecc_uncorrected=0,
            host_free_bytes=host_free,
        )
