"""Plain choices of the fleet's tables: how a node reaches its devices and what a device is."""

from enum import IntEnum, StrEnum


class Backend(StrEnum):
    NVML = "nvml"  # real NVIDIA GPUs through NVML
    CPU = "cpu"  # no GPU: the node offers its CPU, with a share of RAM as capacity
    SIM = "sim"  # simulated GPUs for demos and tests; always labelled as such


class DeviceKind(StrEnum):
    GPU = "gpu"
    CPU = "cpu"


class Resolution(IntEnum):
    """Seconds one telemetry sample covers."""

    RAW = 0  # a single reading
    MINUTE = 60  # the mean of one minute's readings


BACKEND_CHOICES = [(Backend.NVML.value, "NVML"), (Backend.CPU.value, "CPU"), (Backend.SIM.value, "Simulated")]
DEVICE_KIND_CHOICES = [(DeviceKind.GPU.value, "GPU"), (DeviceKind.CPU.value, "CPU")]
RESOLUTION_CHOICES = [(Resolution.RAW.value, "Raw"), (Resolution.MINUTE.value, "1-minute rollup")]


def device_queue(kind: str, node: str, index: int) -> str:
    """A device's own Celery queue, e.g. gpu.node1.0: its worker consumes only that."""
    return f"{kind}.{node}.{index}"


def parse_device_queue(queue: str) -> tuple[str, str, int] | None:
    """(kind, node, index) of a device queue, or None for any other queue (e.g. `default`)."""
    parts = queue.split(".")
    if len(parts) != 3 or parts[0] not in {k.value for k in DeviceKind} or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])
