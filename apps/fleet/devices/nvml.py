"""Real NVIDIA GPUs through NVML (the nvidia-ml-py package, imported as `pynvml`).

NVML errors never escape sample(): a figure the GPU does not offer is None, and a GPU that
is lost or broken gives a reading with `error` while the others are read as usual. A lost
GPU's handle is looked up again on later samples, since a reset can bring it back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psutil
import pynvml

from apps.fleet.domain.capacity import gpu_capacity
from apps.fleet.domain.kinds import Backend, DeviceKind

from .base import BackendUnavailable, DeviceInfo, DeviceReading, NodeInfo, ProcessUse
from .cpu import host_node_info

log = logging.getLogger(__name__)


class _DeviceFailed(Exception):
    """Reading one GPU failed in a way that makes the whole reading worthless."""


class NvmlBackend:
    name = Backend.NVML.value

    def __init__(self, node_name: str, *, nvml_module: ModuleType | Any | None = None) -> None:
        # node_name goes unused: NVML's UUIDs already name each GPU across the fleet.
        self._nvml = nvml = nvml_module if nvml_module is not None else pynvml
        # Errors that say a figure does not exist here (fans on datacenter cards, ECC turned
        # off, a call the installed driver predates): the figure is None, the GPU is fine.
        self._absent = frozenset(
            {nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_NO_PERMISSION, nvml.NVML_ERROR_FUNCTION_NOT_FOUND}
        )
        # Errors that say the GPU itself is gone or broken, whichever call met them.
        self._broken = frozenset(
            {
                nvml.NVML_ERROR_GPU_IS_LOST,
                nvml.NVML_ERROR_RESET_REQUIRED,
                nvml.NVML_ERROR_CORRUPTED_INFOROM,
                nvml.NVML_ERROR_UNKNOWN,
                nvml.NVML_ERROR_GPU_NOT_FOUND,
                nvml.NVML_ERROR_UNINITIALIZED,
                nvml.NVML_ERROR_DRIVER_NOT_LOADED,
                nvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
            }
        )
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise BackendUnavailable(str(exc)) from exc
        try:
            self._node = self._read_node()
            self._devices, self._handles = self._find_devices()
        except Exception:
            nvml.nvmlShutdown()
            raise
        self._open = True

    def node_info(self) -> NodeInfo:
        return self._node

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def sample(self, now: float) -> list[DeviceReading]:
        return [self._read(device) for device in self._devices]

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as exc:
                log.warning("NVML shutdown failed: %s", exc)

    def _read_node(self) -> NodeInfo:
        nvml = self._nvml
        try:
            driver = nvml.nvmlSystemGetDriverVersion()
        except nvml.NVMLError:
            driver = ""
        try:
            cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()  # e.g. 12040 for CUDA 12.4
            cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except nvml.NVMLError:
            cuda_version = ""
        return host_node_info(backend=self.name, driver_version=driver, cuda_version=cuda_version)

    def _find_devices(self) -> tuple[list[DeviceInfo], dict[int, Any]]:
        nvml = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            raise BackendUnavailable(str(exc)) from exc
        devices: list[DeviceInfo] = []
        handles: dict[int, Any] = {}
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = self._call("memory info", nvml.nvmlDeviceGetMemoryInfo, handle, essential=True)
                total = 0 if memory is None else memory.total  # None: unified memory NVML will not size
                devices.append(
                    DeviceInfo(
                        index=index,
                        uuid=nvml.nvmlDeviceGetUUID(handle),
                        name=nvml.nvmlDeviceGetName(handle),
                        kind=DeviceKind.GPU.value,
                        simulated=False,
                        memory_total_bytes=total,
                        capacity_bytes=gpu_capacity(total),
                    )
                )
                handles[index] = handle
            except (nvml.NVMLError, _DeviceFailed) as exc:
                # A GPU that cannot even be named is left out rather than failing the node.
                log.warning("NVML: GPU %d left out, it cannot be read: %s", index, exc)
        if not devices:
            raise BackendUnavailable("no NVIDIA GPU found")
        return devices, handles

    def _handle(self, device: DeviceInfo) -> Any:
        handle = self._handles.get(device.index)
        if handle is not None:
            return handle
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(device.index)
            found = nvml.nvmlDeviceGetUUID(handle)
        except nvml.NVMLError as exc:
            raise _DeviceFailed(f"handle: {exc}") from exc
        # Indexes follow PCI order, so after a GPU drops off the bus another may take its index.
        if found != device.uuid:
            raise _DeviceFailed(f"handle: index {device.index} is now {found}, not {device.uuid}")
        self._handles[device.index] = handle
        return handle

    def _read(self, device: DeviceInfo) -> DeviceReading:
        try:
            return self._read_figures(device, self._handle(device))
        except _DeviceFailed as exc:
            error = str(exc)
        except Exception as exc:  # ctypes and driver surprises: one GPU must not stop the others
            log.exception("NVML: reading GPU %d failed", device.index)
            error = f"{type(exc).__name__}: {exc}"
        self._handles.pop(device.index, None)  # look it up afresh next time: it may come back
        return DeviceReading.failed(device.index, device.uuid, device.memory_total_bytes, error)

    def _read_figures(self, device: DeviceInfo, handle: Any) -> DeviceReading:
        nvml = self._nvml
        # Memory and utilisation are what MOC places and schedules by: any error there fails
        # the reading. The rest are extras a GPU may not offer.
        memory = self._call("memory info", nvml.nvmlDeviceGetMemoryInfo, handle, essential=True)
        util = self._call("utilisation", nvml.nvmlDeviceGetUtilizationRates, handle, essential=True)
        temperature = self._call(
            "temperature", nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
        )
        power_mw = self._call("power", nvml.nvmlDeviceGetPowerUsage, handle)
        limit_mw = self._call("power limit", nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        fan = self._call("fan", nvml.nvmlDeviceGetFanSpeed, handle)
        # Each PCIe call counts bytes over a 20 ms window inside the driver: wall time, not CPU.
        tx_kb = self._call("PCIe TX", nvml.nvmlDeviceGetPcieThroughput, handle, nvml.NVML_PCIE_UTIL_TX_BYTES)
        rx_kb = self._call("PCIe RX", nvml.nvmlDeviceGetPcieThroughput, handle, nvml.NVML_PCIE_UTIL_RX_BYTES)
        return DeviceReading(
            index=device.index,
            uuid=device.uuid,
            gpu_util=None if util is None else float(util.gpu),
            mem_util=None if util is None else float(util.memory),
            mem_total_bytes=device.memory_total_bytes if memory is None else memory.total,
            mem_used_bytes=None if memory is None else memory.used,
            mem_free_bytes=None if memory is None else memory.free,
            temperature_c=None if temperature is None else float(temperature),
            power_w=None if power_mw is None else power_mw / 1000,
            power_limit_w=None if limit_mw is None else limit_mw / 1000,
            sm_clock_mhz=self._call("SM clock", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
            mem_clock_mhz=self._call(
                "memory clock", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM
            ),
            fan_pct=None if fan is None else float(fan),
            pcie_tx_bytes_s=None if tx_kb is None else tx_kb * 1024,
            pcie_rx_bytes_s=None if rx_kb is None else rx_kb * 1024,
            ecc_corrected=self._ecc(handle, nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ecc_uncorrected=self._ecc(handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
            processes=self._processes(handle),
        )

    def _ecc(self, handle: Any, error_type: int) -> int | None:
        """Errors since the driver loaded (volatile), not over the card's life (aggregate):
        the count that says whether the GPU is failing now."""
        nvml = self._nvml
        return self._call(
            "ECC errors", nvml.nvmlDeviceGetTotalEccErrors, handle, error_type, nvml.NVML_VOLATILE_ECC
        )

    def _processes(self, handle: Any) -> tuple[ProcessUse, ...]:
        try:
            running = self._call("processes", self._nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        except self._nvml.NVMLLibraryMismatchError:
            # Raised instead of an NVMLError when the driver predates the call's versioned form.
            return ()
        return tuple(
            ProcessUse(pid=p.pid, used_bytes=p.usedGpuMemory, name=_process_name(p.pid)) for p in running
        )

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, essential: bool = False) -> Any:
        """fn(*args), or None when the figure is not offered; _DeviceFailed when the GPU is."""
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            if exc.value in self._absent:
                return None
            if essential or exc.value in self._broken:
                raise _DeviceFailed(f"{what}: {exc}") from exc
            log.debug("NVML: %s unreadable: %s", what, exc)
            return None


def _process_name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:  # gone, hidden in another PID namespace, or not ours to read
        return ""
