"""MOC_DEVICES: parsing it, and the backend (with its reason) that each value opens."""

from __future__ import annotations

import psutil
import pynvml
import pytest

from apps.core.domain.units import format_bytes
from apps.fleet.devices.base import SimLoad
from apps.fleet.devices.cpu import CpuBackend
from apps.fleet.devices.nvml import NvmlBackend
from apps.fleet.devices.select import open_backend, parse_spec
from apps.fleet.devices.sim import SimBackend
from tests.fleet.devices.fake_pynvml import FakeNvml, gpus

GiB, MiB = 1024**3, 1024**2


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("auto", ("auto", [])),
        ("nvml", ("nvml", [])),
        (" CPU ", ("cpu", [])),
        ("sim:2x24GiB", ("sim", [(2, 24 * GiB)])),
        ("sim:2x24GiB,1x80GiB", ("sim", [(2, 24 * GiB), (1, 80 * GiB)])),
        ("sim: 4 x 512MiB , 16GB", ("sim", [(4, 512 * MiB), (1, 16 * 1000**3)])),
        ("sim:64x1gib", ("sim", [(64, GiB)])),
    ],
)
def test_parse_spec_reads_every_form_moc_devices_takes(spec: str, parsed: tuple) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("gpu", "the kind must be one of auto, nvml, cpu, sim"),
        ("", "the kind must be one of"),
        ("cpu:2x24GiB", "only sim takes sizes"),
        ("sim", "say how many simulated GPUs of what size"),
        ("sim:", "say how many simulated GPUs of what size"),
        ("sim:2x24", "'2x24' is not COUNTxSIZE in GiB, MiB or GB"),
        ("sim:2x24TB", "is not COUNTxSIZE"),
        ("sim:2x24GiB,", "'' is not COUNTxSIZE"),
        ("sim:-1x24GiB", "is not COUNTxSIZE"),
        ("sim:0x24GiB", "a count must be from 1 to 64, not 0"),
        ("sim:65x24GiB", "a count must be from 1 to 64, not 65"),
        ("sim:1x0GiB", "needs some memory"),
    ],
)
def test_parse_spec_refuses_bad_values_naming_moc_devices(spec: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="MOC_DEVICES=") as caught:
        parse_spec(spec)

    assert complaint in str(caught.value)


def test_auto_opens_nvml_when_there_are_gpus() -> None:
    backend, reason = open_backend(
        "auto", node_name="box", cpu_capacity_share=0.5, nvml_module=FakeNvml(gpus(2))
    )
    backend.close()

    assert isinstance(backend, NvmlBackend)
    assert reason == "MOC_DEVICES=auto: 2 NVIDIA GPUs through NVML"


def test_auto_counts_a_single_gpu_in_the_singular() -> None:
    backend, reason = open_backend(
        "auto", node_name="box", cpu_capacity_share=0.5, nvml_module=FakeNvml(gpus(1))
    )
    backend.close()

    assert reason == "MOC_DEVICES=auto: 1 NVIDIA GPU through NVML"


def test_auto_without_a_driver_offers_the_cpu_and_says_why() -> None:
    nvml = FakeNvml(gpus(2))
    nvml.errors["nvmlInit"] = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND

    backend, reason = open_backend("auto", node_name="box", cpu_capacity_share=0.5, nvml_module=nvml)

    assert isinstance(backend, CpuBackend)
    assert reason == (
        "MOC_DEVICES=auto: NVML unavailable (NVML Shared Library Not Found); "
        "offering the CPU as one device (50% of RAM as capacity)"
    )


def test_auto_on_a_node_with_a_driver_and_no_gpu_offers_the_cpu() -> None:
    backend, reason = open_backend("auto", node_name="box", cpu_capacity_share=0.5, nvml_module=FakeNvml([]))

    assert isinstance(backend, CpuBackend)
    assert "NVML unavailable (no NVIDIA GPU found)" in reason


def test_nvml_asked_for_but_unavailable_still_falls_back_to_the_cpu() -> None:
    nvml = FakeNvml(gpus(1))
    nvml.errors["nvmlInit"] = pynvml.NVML_ERROR_DRIVER_NOT_LOADED

    backend, reason = open_backend("nvml", node_name="box", cpu_capacity_share=0.25, nvml_module=nvml)

    assert isinstance(backend, CpuBackend)
    assert backend.devices()[0].capacity_bytes == int(backend.devices()[0].memory_total_bytes * 0.25)
    assert reason.startswith("MOC_DEVICES=nvml: NVML unavailable (Driver Not Loaded); offering the CPU")


def test_cpu_opens_the_cpu_backend_without_touching_nvml() -> None:
    nvml = FakeNvml(gpus(1))

    backend, reason = open_backend("cpu", node_name="box", cpu_capacity_share=0.5, nvml_module=nvml)

    assert isinstance(backend, CpuBackend)
    assert reason == "MOC_DEVICES=cpu: offering the CPU as one device (50% of RAM as capacity)"
    assert nvml.inits == 0


def test_sim_opens_simulated_gpus_that_follow_the_given_loads() -> None:
    backend, reason = open_backend(
        "sim:2x24GiB,1x80GiB",
        node_name="box",
        cpu_capacity_share=0.5,
        sim_load=lambda: {2: SimLoad(placed_bytes=GiB)},
    )

    assert isinstance(backend, SimBackend)
    assert reason.startswith("MOC_DEVICES=sim:2x24GiB,1x80GiB: 3 simulated GPUs (2x24 GiB, 1x80 GiB)")
    assert backend.sample(0.0)[2].mem_used_bytes > GiB


def test_sim_says_when_host_memory_caps_what_its_gpus_offer_together() -> None:
    cap = int(psutil.virtual_memory().total * 0.01) // 2

    backend, reason = open_backend("sim:2x80GiB", node_name="box", cpu_capacity_share=0.01)

    assert [d.capacity_bytes for d in backend.devices()] == [cap, cap]
    assert reason == (
        "MOC_DEVICES=sim:2x80GiB: 2 simulated GPUs (2x80 GiB); their models live in host memory,"
        f" so together they offer at most 1% of the host's RAM, {format_bytes(cap)} each"
    )


def test_open_backend_refuses_a_bad_spec_rather_than_guessing() -> None:
    with pytest.raises(ValueError, match="MOC_DEVICES='sim:lots'"):
        open_backend("sim:lots", node_name="box", cpu_capacity_share=0.5)
