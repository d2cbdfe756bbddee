"""Which memory a device's loads take: what a figure measured on one device holds for."""

from __future__ import annotations

import pytest

from apps.fleet.domain.kinds import HOST_MEMORY, Backend, DeviceKind, MemoryKind, memory_kind

H100 = "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(
    ("kind", "backend", "simulated"),
    [
        (DeviceKind.CPU, Backend.CPU, False),  # a node without a GPU offers its CPU
        (DeviceKind.GPU, Backend.SIM, True),  # a simulated GPU has no memory of its own
        (DeviceKind.CPU, Backend.NVML, False),  # a GPU node's CPU device, should it offer one
        (DeviceKind.GPU, Backend.NVML, True),  # labelled simulated, whatever its node says
    ],
)
def test_cpus_and_simulated_gpus_share_one_kind_host_memory(kind: str, backend: str, simulated: bool) -> None:
    assert memory_kind(kind=kind, backend=backend, simulated=simulated, name=H100) == HOST_MEMORY


def test_a_real_gpu_is_of_its_models_kind() -> None:
    found = memory_kind(kind=DeviceKind.GPU, backend=Backend.NVML, simulated=False, name=H100)

    assert found == MemoryKind(gpu_model=H100)
    assert found != HOST_MEMORY


def test_two_gpu_models_are_different_kinds() -> None:
    a100 = memory_kind(
        kind=DeviceKind.GPU, backend=Backend.NVML, simulated=False, name="NVIDIA A100-SXM4-40GB"
    )

    assert a100 != memory_kind(kind=DeviceKind.GPU, backend=Backend.NVML, simulated=False, name=H100)


def test_a_simulated_gpu_named_like_a_real_one_is_still_host_memory() -> None:
    sim = memory_kind(kind=DeviceKind.GPU, backend=Backend.SIM, simulated=True, name=H100)

    assert sim != memory_kind(kind=DeviceKind.GPU, backend=Backend.NVML, simulated=False, name=H100)


def test_a_kind_reads_as_where_it_was_measured() -> None:
    assert str(HOST_MEMORY) == "host memory"
    assert str(MemoryKind(gpu_model=H100)) == H100
