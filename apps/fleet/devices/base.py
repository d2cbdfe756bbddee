"""What every device backend hands the agent: the node, its devices, and their readings.

Plain frozen dataclasses so the agent, the sampler bench and the tests can use them without
Django, and so a reading can be sent on as one JSON message without further translation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from typing import Protocol

# Made-up UUIDs (CPU and simulated devices) are uuid5 names under this namespace, so the same
# node name gives the same devices after a restart and the same rows in the database.
_MOC_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "moc:devices")


def made_up_uuid(prefix: str, *parts: object) -> str:
    """A stable UUID for a device NVML does not name, e.g. `CPU-…` or `SIM-…`."""
    return f"{prefix}-{uuid.uuid5(_MOC_NAMESPACE, '/'.join(str(p) for p in parts))}"


class BackendUnavailable(Exception):
    """The backend cannot run on this node (no driver, no device); the message says why."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    hostname: str
    cpu_model: str
    cpu_count: int
    ram_bytes: int
    driver_version: str
    cuda_version: str
    backend: str  # an apps.fleet.domain.kinds.Backend value


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int
    uuid: str
    name: str
    kind: str  # an apps.fleet.domain.kinds.DeviceKind value
    simulated: bool
    memory_total_bytes: int
    capacity_bytes: int  # what MOC may place on it; less than the total, see each backend


@dataclass(frozen=True, slots=True)
class ProcessUse:
    pid: int
    used_bytes: int | None  # None where the driver will not say (WDDM, some containers)
    name: str  # "" when the pid is not visible from here (another PID namespace)


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One device at one instant. Any figure may be None: the device cannot report it."""

    index: int
    uuid: str
    gpu_util: float | None
    mem_util: float | None
    mem_total_bytes: int
    mem_used_bytes: int | None
    mem_free_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    fan_pct: float | None
    pcie_tx_bytes_s: int | None
    pcie_rx_bytes_s: int | None
    ecc_corrected: int | None
    ecc_uncorrected: int | None
    processes: tuple[ProcessUse, ...] = ()
    error: str = ""  # non-empty: the device could not be read at all
    # The host's available memory, for a device that keeps weights there (the CPU, a simulated GPU):
    # what a load onto it can really take, whatever the device's own figures say. None elsewhere.
    host_free_bytes: int | None = None

    @classmethod
    def failed(cls, index: int, uuid: str, mem_total_bytes: int, error: str) -> DeviceReading:
        """The reading of a device that could not be read: every figure unknown."""
        unknown = dict.fromkeys(_FIGURES)
        return cls(index=index, uuid=uuid, mem_total_bytes=mem_total_bytes, error=error, **unknown)

    def as_message(self) -> dict[str, object]:
        """The per-device fields of a telemetry message (docs/TELEMETRY.md) that the device
        itself reports; the agent adds MOC's id, name, kind, simulated and health."""
        # Spelled out rather than dataclasses.asdict(): this runs for every device every
        # second, and asdict deep-copies.
        return {
            "index": self.index,
            "uuid": self.uuid,
            "error": self.error,
            "gpu_util": self.gpu_util,
            "mem_util": self.mem_util,
            "mem_total_bytes": self.mem_total_bytes,
            "mem_used_bytes": self.mem_used_bytes,
            "mem_free_bytes": self.mem_free_bytes,
            "host_free_bytes": self.host_free_bytes,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "sm_clock_mhz": self.sm_clock_mhz,
            "mem_clock_mhz": self.mem_clock_mhz,
            "fan_pct": self.fan_pct,
            "pcie_tx_bytes_s": self.pcie_tx_bytes_s,
            "pcie_rx_bytes_s": self.pcie_rx_bytes_s,
            "ecc_corrected": self.ecc_corrected,
            "ecc_uncorrected": self.ecc_uncorrected,
            "processes": [{"pid": p.pid, "used_bytes": p.used_bytes, "name": p.name} for p in self.processes],
        }


# The figures of a reading that may be unknown (None).
_FIGURES = tuple(
    f.name
    for f in fields(DeviceReading)
    if f.name not in {"index", "uuid", "mem_total_bytes", "processes", "error"}
)


@dataclass(frozen=True, slots=True)
class SimLoad:
    """What MOC put on one simulated device: the figures a simulated GPU follows."""

    placed_bytes: int = 0
    running_jobs: int = 0
    requests_per_s: float = 0.0


class DeviceBackend(Protocol):
    """How the agent reaches a node's devices, whatever they are.

    sample() must not raise because one device failed: that device's reading carries
    `error` and the others are read as usual.
    """

    name: str  # an apps.fleet.domain.kinds.Backend value

    def node_info(self) -> NodeInfo: ...

    def devices(self) -> list[DeviceInfo]: ...

    def sample(self, now: float) -> list[DeviceReading]: ...

    def close(self) -> None: ...
