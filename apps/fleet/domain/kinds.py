"""Plain choices of the fleet's tables: how a node reaches its devices and what a device is, and which
memory its models live in."""

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class MemoryKind:
    """The memory a device's models live in, as far as a figure measured there holds for another
    device: the host's RAM (`gpu_model` None), or the memory of one model of GPU."""

    gpu_model: str | None

    def __str__(self) -> str:
        return "host memory" if self.gpu_model is None else self.gpu_model


HOST_MEMORY = MemoryKind(gpu_model=None)


def memory_kind(*, kind: str, backend: str, simulated: bool, name: str) -> MemoryKind:
    """Which memory a device's loads take, so that what one load measured is applied only where it
    was measured. A CPU's and a simulated GPU's models live in the host's RAM, and their workers
    measure them by process RSS: weights, the runtime's objects and allocator slack, with no device
    context. A real GPU's live in its own memory, measured by the CUDA allocator (or the device's
    free memory), whose kernels' workspace, context and rounding differ from one model of GPU to
    another: so only a GPU of the same name shares a figure."""
    if kind == DeviceKind.GPU and backend == Backend.NVML and not simulated:
        return MemoryKind(gpu_model=name)
    return HOST_MEMORY
