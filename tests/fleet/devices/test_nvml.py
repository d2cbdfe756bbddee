"""The nvml backend against a stand-in for the `pynvml` module (real error classes and codes)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import psutil
import pynvml
import pytest

from apps.fleet.devices.base import BackendUnavailable, ProcessUse
from apps.fleet.devices.nvml import NvmlBackend
from tests.fleet.devices.fake_pynvml import FakeNvml, gpus

GiB, MiB = 1024**3, 1024**2


@pytest.fixture
def nvml() -> FakeNvml:
    return FakeNvml(gpus(2))


@pytest.fixture
def backend(nvml: FakeNvml) -> Iterator[NvmlBackend]:
    opened = NvmlBackend("gpu-box-1", nvml_module=nvml)
    yield opened
    opened.close()


def _unused_pid() -> int:
    return next(pid for pid in range(4_000_000, 4_100_000) if not psutil.pid_exists(pid))


def test_nvml_reads_every_figure_in_moc_units(nvml: FakeNvml) -> None:
    gpu = nvml.gpus[1]
    gpu.memory_used, gpu.gpu_util, gpu.mem_util, gpu.temperature = 30 * GiB, 87, 41, 71
    gpu.power_mw, gpu.power_limit_mw, gpu.sm_clock, gpu.mem_clock, gpu.fan = 512_250, 700_000, 1755, 2619, 44
    gpu.pcie_tx_kb, gpu.pcie_rx_kb, gpu.ecc_corrected, gpu.ecc_uncorrected = 1000, 250, 3, 0
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    reading = backend.sample(0.0)[1]
    backend.close()

    assert (reading.index, reading.uuid, reading.error) == (1, gpu.uuid, "")
    assert (reading.gpu_util, reading.mem_util, reading.temperature_c) == (87.0, 41.0, 71.0)
    assert (reading.mem_total_bytes, reading.mem_used_bytes, reading.mem_free_bytes) == (
        80 * GiB,
        30 * GiB,
        50 * GiB,
    )
    assert (reading.power_w, reading.power_limit_w) == (512.25, 700.0)
    assert (reading.sm_clock_mhz, reading.mem_clock_mhz, reading.fan_pct) == (1755, 2619, 44.0)
    assert (reading.pcie_tx_bytes_s, reading.pcie_rx_bytes_s) == (1_024_000, 256_000)
    assert (reading.ecc_corrected, reading.ecc_uncorrected) == (3, 0)
    assert isinstance(reading.gpu_util, float)


def test_nvml_names_processes_it_can_see_and_leaves_others_unnamed(nvml: FakeNvml) -> None:
    hidden = _unused_pid()
    nvml.gpus[0].processes = [(os.getpid(), 5 * GiB), (hidden, None)]
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    processes = backend.sample(0.0)[0].processes
    backend.close()

    assert processes == (
        ProcessUse(pid=os.getpid(), used_bytes=5 * GiB, name=psutil.Process().name()),
        ProcessUse(pid=hidden, used_bytes=None, name=""),
    )


def test_nvml_describes_each_gpu_with_a_reserve_kept_out_of_capacity(nvml: FakeNvml) -> None:
    nvml.gpus[1].memory_total, nvml.gpus[1].name = 8 * GiB, "NVIDIA L4"
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    big, small = backend.devices()
    backend.close()

    assert (big.index, big.uuid, big.name, big.kind, big.simulated) == (
        0,
        nvml.gpus[0].uuid,
        "NVIDIA H100 80GB HBM3",
        "gpu",
        False,
    )
    assert (big.memory_total_bytes, big.capacity_bytes) == (80 * GiB, 76 * GiB)  # 5%
    assert (small.name, small.capacity_bytes) == ("NVIDIA L4", 8 * GiB - 512 * MiB)  # the 512 MiB floor


def test_nvml_reports_driver_and_cuda_versions_for_the_node(backend: NvmlBackend) -> None:
    node = backend.node_info()

    assert (node.driver_version, node.cuda_version, node.backend) == ("550.54.15", "12.4", "nvml")
    assert node.cpu_count >= 1
    assert node.ram_bytes > 0


def test_nvml_on_a_driver_older_than_the_bindings_leaves_out_what_it_lacks(nvml: FakeNvml) -> None:
    nvml.old_driver = True
    nvml.gpus[0].processes = [(os.getpid(), GiB)]
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    cuda_version = backend.node_info().cuda_version
    reading = backend.sample(0.0)[0]
    backend.close()

    assert cuda_version == ""
    assert (reading.error, reading.processes) == ("", ())


UNSUPPORTED = [
    ("nvmlDeviceGetFanSpeed", "fan_pct"),
    ("nvmlDeviceGetTemperature", "temperature_c"),
    ("nvmlDeviceGetPowerUsage", "power_w"),
    ("nvmlDeviceGetEnforcedPowerLimit", "power_limit_w"),
    ("nvmlDeviceGetPcieThroughput", "pcie_tx_bytes_s"),
    ("nvmlDeviceGetClockInfo", "sm_clock_mhz"),
    ("nvmlDeviceGetTotalEccErrors", "ecc_uncorrected"),
    ("nvmlDeviceGetUtilizationRates", "gpu_util"),
    ("nvmlDeviceGetComputeRunningProcesses", "processes"),
]


@pytest.mark.parametrize(("call", "figure"), UNSUPPORTED)
@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION])
def test_nvml_leaves_a_figure_the_gpu_does_not_offer_empty_and_keeps_the_rest(
    nvml: FakeNvml, call: str, figure: str, code: int
) -> None:
    nvml.gpus[0].errors[call] = code
    nvml.gpus[0].processes = [(os.getpid(), GiB)]
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    reading = backend.sample(0.0)[0]
    backend.close()

    assert getattr(reading, figure) in (None, ())
    assert reading.error == ""
    assert reading.mem_total_bytes == 80 * GiB
    assert all(
        getattr(reading, other) is not None for other in ("gpu_util", "temperature_c") if other != figure
    )


def test_nvml_offers_a_gpu_whose_memory_it_cannot_size_with_no_capacity(nvml: FakeNvml) -> None:
    nvml.gpus[0].errors["nvmlDeviceGetMemoryInfo"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    device = backend.devices()[0]
    reading = backend.sample(0.0)[0]
    backend.close()

    assert (device.memory_total_bytes, device.capacity_bytes) == (0, 0)
    assert (reading.error, reading.mem_total_bytes, reading.mem_used_bytes, reading.mem_free_bytes) == (
        "",
        0,
        None,
        None,
    )
    assert reading.gpu_util == 0.0


def test_nvml_marks_a_lost_gpu_unreadable_and_keeps_sampling_the_others(
    nvml: FakeNvml, backend: NvmlBackend
) -> None:
    nvml.gpus[1].gpu_util = 60
    nvml.lose(0)

    lost, fine = backend.sample(0.0)

    assert lost.error == "memory info: GPU is lost"
    assert (lost.uuid, lost.gpu_util, lost.mem_used_bytes, lost.mem_total_bytes) == (
        nvml.gpus[0].uuid,
        None,
        None,
        80 * GiB,
    )
    assert (fine.error, fine.gpu_util) == ("", 60.0)


def test_nvml_reads_a_lost_gpu_again_once_it_comes_back(nvml: FakeNvml, backend: NvmlBackend) -> None:
    nvml.lose(0)
    gone = backend.sample(0.0)[0]
    still_gone = backend.sample(1.0)[0]
    nvml.bring_back(0)
    nvml.gpus[0].gpu_util = 12

    back = backend.sample(2.0)[0]

    assert gone.error == "memory info: GPU is lost"
    assert still_gone.error == "handle: GPU is lost"
    assert (back.error, back.gpu_util) == ("", 12.0)


def test_nvml_does_not_read_another_gpu_that_took_a_lost_ones_index(
    nvml: FakeNvml, backend: NvmlBackend
) -> None:
    nvml.lose(0)
    backend.sample(0.0)
    nvml.gpus[0] = gpus(1)[0]
    nvml.gpus[0].uuid = "GPU-ffffffff-0000-0000-0000-000000000000"

    reading = backend.sample(1.0)[0]

    assert reading.error == (
        f"handle: index 0 is now GPU-ffffffff-0000-0000-0000-000000000000, not {backend.devices()[0].uuid}"
    )


@pytest.mark.parametrize(
    ("call", "code", "error"),
    [
        ("nvmlDeviceGetMemoryInfo", pynvml.NVML_ERROR_UNKNOWN, "memory info: Unknown Error"),
        ("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_TIMEOUT, "utilisation: Timeout"),
        ("nvmlDeviceGetTemperature", pynvml.NVML_ERROR_RESET_REQUIRED, "temperature: GPU requires restart"),
        ("nvmlDeviceGetTotalEccErrors", pynvml.NVML_ERROR_CORRUPTED_INFOROM, "ECC errors: Corrupted infoROM"),
    ],
)
def test_nvml_marks_a_broken_gpu_unreadable_with_what_failed(
    nvml: FakeNvml, backend: NvmlBackend, call: str, code: int, error: str
) -> None:
    nvml.gpus[0].errors[call] = code

    broken, fine = backend.sample(0.0)

    assert broken.error == error
    assert broken.temperature_c is None
    assert fine.error == ""


def test_nvml_skips_an_optional_figure_that_times_out_without_failing_the_gpu(
    nvml: FakeNvml, backend: NvmlBackend
) -> None:
    nvml.gpus[0].errors["nvmlDeviceGetFanSpeed"] = pynvml.NVML_ERROR_TIMEOUT

    reading = backend.sample(0.0)[0]

    assert (reading.fan_pct, reading.error, reading.gpu_util) == (None, "", 0.0)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "Driver Not Loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "Insufficient Permissions"),
    ],
)
def test_nvml_that_cannot_start_is_unavailable_with_the_reason(
    nvml: FakeNvml, code: int, reason: str
) -> None:
    nvml.errors["nvmlInit"] = code

    with pytest.raises(BackendUnavailable, match=f"^{reason}$"):
        NvmlBackend("gpu-box-1", nvml_module=nvml)


def test_nvml_with_no_gpu_is_unavailable_and_shuts_nvml_down() -> None:
    nvml = FakeNvml([])

    with pytest.raises(BackendUnavailable, match="^no NVIDIA GPU found$"):
        NvmlBackend("gpu-box-1", nvml_module=nvml)
    assert not nvml.initialised


def test_nvml_leaves_out_a_gpu_it_cannot_name_at_start(nvml: FakeNvml) -> None:
    nvml.gpus[0].errors["nvmlDeviceGetUUID"] = pynvml.NVML_ERROR_UNKNOWN
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    devices = backend.devices()
    backend.close()

    assert [d.uuid for d in devices] == [nvml.gpus[1].uuid]


def test_nvml_closes_by_shutting_nvml_down_once(nvml: FakeNvml) -> None:
    backend = NvmlBackend("gpu-box-1", nvml_module=nvml)

    backend.close()
    backend.close()

    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_a_reading_becomes_the_device_fields_of_a_telemetry_message(
    nvml: FakeNvml, backend: NvmlBackend
) -> None:
    hidden = _unused_pid()
    nvml.gpus[0].processes = [(hidden, GiB)]

    message = backend.sample(0.0)[0].as_message()

    assert list(message) == [
        "index", "uuid", "error", "gpu_util", "mem_util", "mem_total_bytes", "mem_used_bytes",
        "mem_free_bytes", "host_free_bytes", "temperature_c", "power_w", "power_limit_w", "sm_clock_mhz",
        "mem_clock_mhz", "fan_pct", "pcie_tx_bytes_s", "pcie_rx_bytes_s", "ecc_corrected", "ecc_uncorrected",
        "processes",
    ]  # fmt: skip
    assert message["host_free_bytes"] is None  # a real GPU's weights are in its own memory
    assert message["processes"] == [{"pid": hidden, "used_bytes": GiB, "name": ""}]
    assert json.loads(json.dumps(message)) == message
