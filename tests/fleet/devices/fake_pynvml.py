"""A stand-in for the `pynvml` module, at that boundary only, for the nvml backend's tests.

It carries pynvml's own constants and NVMLError classes, so what it raises is what the real
bindings raise (class, code and message); only the driver and the GPUs behind it are made up.
A test sets the GPUs' figures, makes a call fail with any NVML error, loses a GPU mid-run and
brings it back, or makes nvmlInit fail as it does on a machine with no driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import NamedTuple

import pynvml

GiB = 1024**3


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 80 * GiB
    memory_used: int = 0
    gpu_util: int = 0
    mem_util: int = 0
    temperature: int = 35
    power_mw: int = 70_000
    power_limit_mw: int = 700_000
    sm_clock: int = 1980
    mem_clock: int = 2619
    fan: int = 30
    pcie_tx_kb: int = 0
    pcie_rx_kb: int = 0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, used bytes)
    errors: dict[str, int] = field(default_factory=dict)  # pynvml function name -> NVML error code
    lost: bool = False
    generation: int = 0  # bumped when a lost GPU comes back: handles taken before stay dead


class _Handle(NamedTuple):
    gpu: FakeGpu
    generation: int


class FakeNvml:
    """Answers the pynvml calls the nvml backend makes, from a list of FakeGpu."""

    def __init__(self, gpus: list[FakeGpu], *, driver_version: str = "550.54.15", cuda: int = 12040) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVML_", "NVMLError")) or name == "NVMLLibraryMismatchError":
                setattr(self, name, getattr(pynvml, name))
        self.gpus = gpus
        self.driver_version = driver_version
        self.cuda = cuda
        self.errors: dict[str, int] = {}  # system-level calls: function name -> NVML error code
        self.old_driver = False  # a driver older than the bindings: their versioned calls are missing
        self.inits = 0
        self.shutdowns = 0

    @property
    def initialised(self) -> bool:
        return self.inits > self.shutdowns

    def lose(self, index: int) -> None:
        self.gpus[index].lost = True

    def bring_back(self, index: int) -> None:
        gpu = self.gpus[index]
        gpu.lost = False
        gpu.generation += 1

    def _check(self, call: str) -> None:
        if call != "nvmlInit" and not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if call in self.errors:
            raise pynvml.NVMLError(self.errors[call])

    def _gpu(self, handle: _Handle, call: str) -> FakeGpu:
        self._check(call)
        gpu = handle.gpu
        if gpu.lost or handle.generation != gpu.generation:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if call in gpu.errors:
            raise pynvml.NVMLError(gpu.errors[call])
        return gpu

    def nvmlInit(self) -> None:
        self._check("nvmlInit")
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        if self.old_driver:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if gpu.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if "nvmlDeviceGetHandleByIndex" in gpu.errors:
            raise pynvml.NVMLError(gpu.errors["nvmlDeviceGetHandleByIndex"])
        return _Handle(gpu, gpu.generation)

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> SimpleNamespace:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(
            total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used
        )

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> SimpleNamespace:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.gpu_util, memory=gpu.mem_util)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        return {pynvml.NVML_CLOCK_SM: gpu.sm_clock, pynvml.NVML_CLOCK_MEM: gpu.mem_clock}[clock]

    def nvmlDeviceGetFanSpeed(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetFanSpeed").fan

    def nvmlDeviceGetPcieThroughput(self, handle: _Handle, counter: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetPcieThroughput")
        return {
            pynvml.NVML_PCIE_UTIL_TX_BYTES: gpu.pcie_tx_kb,
            pynvml.NVML_PCIE_UTIL_RX_BYTES: gpu.pcie_rx_kb,
        }[counter]

    def nvmlDeviceGetTotalEccErrors(self, handle: _Handle, error_type: int, counter_type: int) -> int:
        assert counter_type == pynvml.NVML_VOLATILE_ECC
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEccErrors")
        return {
            pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: gpu.ecc_corrected,
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: gpu.ecc_uncorrected,
        }[error_type]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        if self.old_driver:  # pynvml turns the missing _v3 symbol into this, not an NVMLError
            raise pynvml.NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match"
            )
        return [
            SimpleNamespace(
                pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF
            )
            for pid, used in gpu.processes
        ]


def gpus(count: int = 2) -> list[FakeGpu]:
    """`count` idle H100s with distinct UUIDs."""
    return [FakeGpu(uuid=f"GPU-00000000-0000-0000-0000-00000000000{i}") for i in range(count)]
