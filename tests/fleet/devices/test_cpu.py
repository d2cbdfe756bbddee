"""The cpu backend, for real: psutil on this machine, no stand-ins."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from apps.fleet.devices.cpu import CpuBackend


@pytest.fixture
def backend() -> Iterator[CpuBackend]:
    opened = CpuBackend("cpu-box-1", capacity_share=0.25)
    yield opened
    opened.close()


def test_cpu_backend_offers_the_cpu_as_one_device_with_a_share_of_ram(backend: CpuBackend) -> None:
    [device] = backend.devices()

    assert (device.index, device.kind, device.simulated) == (0, "cpu", False)
    assert device.memory_total_bytes == psutil.virtual_memory().total
    assert device.capacity_bytes == int(device.memory_total_bytes * 0.25)
    assert device.name
    assert device.uuid.startswith("CPU-")


def test_cpu_device_keeps_its_uuid_across_restarts_and_differs_between_nodes() -> None:
    first = CpuBackend("cpu-box-1").devices()[0].uuid

    assert CpuBackend("cpu-box-1").devices()[0].uuid == first
    assert CpuBackend("cpu-box-2").devices()[0].uuid != first


@pytest.mark.parametrize("share", [0, -0.5, 1.01, 2])
def test_cpu_backend_refuses_a_capacity_share_outside_zero_to_one(share: float) -> None:
    with pytest.raises(ValueError, match="capacity share must be above 0 and at most 1"):
        CpuBackend("cpu-box-1", capacity_share=share)


def test_cpu_backend_accepts_the_whole_of_ram() -> None:
    device = CpuBackend("cpu-box-1", capacity_share=1.0).devices()[0]

    assert device.capacity_bytes == device.memory_total_bytes


def test_cpu_reading_has_utilisation_and_memory_in_range(backend: CpuBackend) -> None:
    sum(i * i for i in range(200_000))  # some work between the priming call and the reading

    [reading] = backend.sample(0.0)

    assert reading.error == ""
    assert isinstance(reading.gpu_util, float)
    assert 0.0 <= reading.gpu_util <= 100.0
    assert reading.mem_total_bytes == psutil.virtual_memory().total
    assert 0 < reading.mem_used_bytes < reading.mem_total_bytes
    assert reading.mem_used_bytes + reading.mem_free_bytes == reading.mem_total_bytes
    assert reading.host_free_bytes == reading.mem_free_bytes  # the CPU's memory is the host's


def test_cpu_reading_reports_temperature_only_where_a_cpu_sensor_exists(backend: CpuBackend) -> None:
    [reading] = backend.sample(0.0)

    chips = psutil.sensors_temperatures()
    if any(chip in chips for chip in ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal")):
        assert isinstance(reading.temperature_c, float)
        assert 0.0 < reading.temperature_c < 130.0
    else:
        assert reading.temperature_c is None


def test_cpu_reading_leaves_gpu_only_figures_empty(backend: CpuBackend) -> None:
    [reading] = backend.sample(0.0)

    gpu_only = (
        reading.mem_util, reading.power_w, reading.power_limit_w, reading.sm_clock_mhz, reading.mem_clock_mhz,
        reading.fan_pct, reading.pcie_tx_bytes_s, reading.pcie_rx_bytes_s, reading.ecc_corrected,
        reading.ecc_uncorrected,
    )  # fmt: skip
    assert gpu_only == (None,) * 10
    assert reading.processes == ()


def test_cpu_node_info_describes_this_host(backend: CpuBackend) -> None:
    node = backend.node_info()

    assert node.backend == "cpu"
    assert node.cpu_count == psutil.cpu_count()
    assert node.ram_bytes == psutil.virtual_memory().total
    assert node.hostname
    assert node.cpu_model
    assert (node.driver_version, node.cuda_version) == ("", "")
