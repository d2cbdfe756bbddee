"""A node with no GPU offers its CPU as one device, so MOC still runs (small models, demos, CI).

Also home to the host facts (hostname, CPU model, RAM) that every backend reports for its node,
and to the host's memory as this process can have it (`host_memory`), which the CPU device, the
simulated GPUs and the device worker's check as a load starts all read.
"""

from __future__ import annotations

import platform
import socket
from pathlib import Path

import psutil

from apps.fleet.domain.capacity import HostMemory, host_capacity, within_cgroup
from apps.fleet.domain.kinds import Backend, DeviceKind

from .base import DeviceInfo, DeviceReading, NodeInfo, made_up_uuid

# Chips whose sensors measure the CPU package itself, in order of preference (Intel, AMD, ARM
# boards); other sensors (NVMe, ACPI zones) would report a temperature that is not the CPU's.
_CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal")
# This process's memory cgroup, as a container sees its own: the unified hierarchy (v2) first, then v1.
_CGROUPS = (
    Path("/sys/fs/cgroup"),  # memory.max, memory.current, memory.stat
    Path("/sys/fs/cgroup/memory"),  # memory.limit_in_bytes, memory.usage_in_bytes, memory.stat
)
_CGROUP_FILES = (("memory.max", "memory.current"), ("memory.limit_in_bytes", "memory.usage_in_bytes"))


def cpu_model() -> str:
    """The CPU's marketing name, as the kernel reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def host_memory() -> HostMemory:
    """The host's RAM and what is available of it, bounded by this process's memory cgroup where
    one limits it (in a container psutil reads the whole machine's). Raises OSError or psutil.Error
    when the host cannot be read."""
    machine = psutil.virtual_memory()
    host = HostMemory(int(machine.total), int(machine.available))
    for folder, (limit, usage) in zip(_CGROUPS, _CGROUP_FILES, strict=True):
        if (folder / limit).is_file():
            return within_cgroup(
                host,
                limit=_read(folder / limit),
                usage=_read(folder / usage),
                stat=_read(folder / "memory.stat"),
            )
    return host


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def host_node_info(*, backend: str, driver_version: str = "", cuda_version: str = "") -> NodeInfo:
    """This machine as a node; the backend adds what only it knows (driver, CUDA)."""
    return NodeInfo(
        hostname=socket.gethostname(),
        cpu_model=cpu_model(),
        cpu_count=psutil.cpu_count(logical=True) or 1,
        ram_bytes=psutil.virtual_memory().total,
        driver_version=driver_version,
        cuda_version=cuda_version,
        backend=backend,
    )


def _cpu_sensor() -> str | None:
    """The name of the chip that reports the CPU's temperature here, if there is one."""
    read = getattr(psutil, "sensors_temperatures", None)  # absent on some platforms
    chips = read() if read else {}
    return next((chip for chip in _CPU_SENSORS if chips.get(chip)), None)


class CpuBackend:
    name = Backend.CPU.value

    def __init__(self, node_name: str, *, capacity_share: float = 0.5) -> None:
        total = host_memory().total_bytes
        self._device = DeviceInfo(
            index=0,
            uuid=made_up_uuid("CPU", node_name),
            name=cpu_model(),
            kind=DeviceKind.CPU.value,
            simulated=False,
            memory_total_bytes=total,
            capacity_bytes=host_capacity(total, capacity_share),
        )
        self._sensor = _cpu_sensor()  # looked up once: reading every hwmon chip each second is waste
        psutil.cpu_percent(interval=None)  # the first call only primes psutil's counter

    def node_info(self) -> NodeInfo:
        return host_node_info(backend=self.name)

    def devices(self) -> list[DeviceInfo]:
        return [self._device]

    def sample(self, now: float) -> list[DeviceReading]:
        device = self._device
        try:
            memory = host_memory()
            busy = psutil.cpu_percent(interval=None)
            temperature = self._temperature()
        except (OSError, psutil.Error) as exc:
            return [DeviceReading.failed(0, device.uuid, device.memory_total_bytes, f"psutil: {exc}")]
        return [
            DeviceReading(
                index=0,
                uuid=device.uuid,
                gpu_util=float(busy),
                mem_util=None,
                mem_total_bytes=memory.total_bytes,
                mem_used_bytes=memory.total_bytes - memory.available_bytes,
                mem_free_bytes=memory.available_bytes,
                host_free_bytes=memory.available_bytes,
                temperature_c=temperature,
                power_w=None,
                power_limit_w=None,
                sm_clock_mhz=None,
                mem_clock_mhz=None,
                fan_pct=None,
                pcie_tx_bytes_s=None,
                pcie_rx_bytes_s=None,
                ecc_corrected=None,
                ecc_uncorrected=None,
            )
        ]

    def close(self) -> None:
        """Nothing to release: psutil holds no handles."""

    def _temperature(self) -> float | None:
        if self._sensor is None:
            return None
        entries = psutil.sensors_temperatures().get(self._sensor, [])
        # Several entries (package, cores, dies): the hottest is the one that throttles.
        return max((float(e.current) for e in entries), default=None)
