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
