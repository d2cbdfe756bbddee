"""What a load measured applies only to devices of the kind it was measured on (host memory, or one
model of GPU): the reservation per device kind, the scheduler's choice by each device's own figure,
and the API and pages saying where a figure was measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.domain.units import format_bytes
from apps.fleet.domain.kinds import Backend, DeviceKind
from apps.fleet.domain.states import NodeState
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from apps.serving.placing.load import need_bytes
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.serving.factories import PlacementFactory
from tests.serving.test_pages import _block, _gpus
from tests.serving.test_placing import lm, reports_free, simulated

pytestmark = pytest.mark.django_db
P = PlacementState
Client = Callable[[Role | None], APIClient]

MB = 1000 * 1000
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100 80GB PCIe"
RTX = "NVIDIA GeForce RTX 4090"


def gpu(name: str = H100, capacity_gib: float = 76, **fields: Any) -> Any:
    """A real GPU (NVML node): its models live in its own memory."""
    return DeviceFactory(name=name, capacity_bytes=int(capacity_gib * GIB), **fields)


def shown(size: int) -> str:
    """A size as pages show it, on one line."""
    return format_bytes(size).replace(" ", "\xa0")


def measured(version: Any, device: Any, size: int) -> Placement:
    """A load of `version` on `device` that measured `size` and has since been unloaded."""
    return PlacementFactory(
        version=version,
        device=device,
        state=P.UNLOADED,
        reserved_bytes=size,
        measured_bytes=size,
        loaded_at=timezone.now(),
        ended_at=timezone.now(),
    )


def test_a_figure_measured_in_host_memory_is_not_what_a_gpu_reserves(dispatched: list) -> None:
    # given: the report's case, a 24.2 GiB estimate, 7.3 MB measured on a simulated GPU
    version = lm(24.2)
    sim = simulated(node=NodeFactory(backend=Backend.SIM, state=NodeState.OFFLINE))
    measured(version, sim, 7_300_000)
    card = gpu(RTX, capacity_gib=24)

    # when: loaded again, no device given
    with pytest.raises(placing.PlacementRefused) as refused:
        placing.placement_load(version=version)

    # then: the GPU is weighed against the estimate, and it is too small for it
    assert str(refused.value).endswith(
        f"needs 24.2 GiB; the largest device, {card.node.name} gpu {card.index}, offers 24.0 GiB."
    )


def test_a_gpu_reserves_the_estimate_where_only_host_memory_was_measured(dispatched: list) -> None:
    version = lm(24.2)
    measured(version, simulated(node=NodeFactory(backend=Backend.SIM, state=NodeState.OFFLINE)), 7_300_000)
    card = gpu(A100)

    placement = placing.placement_load(version=version)

    assert (placement.device, placement.reserved_bytes) == (card, int(24.2 * GIB))


def test_a_figure_measured_in_host_memory_is_reserved_on_another_host_memory_device(dispatched: list) -> None:
    version = lm(24.2)
    measured(version, simulated(node=NodeFactory(backend=Backend.SIM, state=NodeState.OFFLINE)), 7_300_000)
    cpu = DeviceFactory(kind=DeviceKind.CPU, node__backend=Backend.CPU, capacity_bytes=8 * GIB)

    placement = placing.placement_load(version=version)

    assert (placement.device, placement.reserved_bytes) == (cpu, 7_300_000)


def test_each_device_gets_the_latest_figure_of_its_own_kind_else_the_estimate() -> None:
    version = lm(24)
    h100s = [gpu(H100) for _ in range(3)]
    measured(version, h100s[0], 30 * GIB)
    measured(version, h100s[1], 31 * GIB)  # the later of two H100 loads
    measured(version, simulated(), 7 * MB)
    cpu = DeviceFactory(kind=DeviceKind.CPU, node__backend=Backend.CPU)
    other_sim, a100 = simulated(), gpu(A100)
    PlacementFactory(version=version, device=a100, state=P.FAILED, reserved_bytes=24 * GIB)  # never measured

    needs = need_bytes(version, [h100s[2], cpu, other_sim, a100])

    assert needs == {h100s[2].pk: 31 * GIB, cpu.pk: 7 * MB, other_sim.pk: 7 * MB, a100.pk: 24 * GIB}


def test_the_scheduler_weighs_each_device_against_the_figure_that_holds_there(dispatched: list) -> None:
    # given: measured 20 GiB on an H100 (more than the 12 GiB estimate); now an H100 has 15 GiB
    # free, an A100 14 GiB
    version = lm(12)
    measured(version, gpu(H100, node=NodeFactory(state=NodeState.OFFLINE)), 20 * GIB)
    h100, a100 = gpu(H100, capacity_gib=76), gpu(A100, capacity_gib=76)
    PlacementFactory(device=h100, state=P.LOADED, reserved_bytes=61 * GIB, last_used_at=timezone.now())
    PlacementFactory(device=a100, state=P.LOADED, reserved_bytes=62 * GIB, last_used_at=timezone.now())

    placement = placing.placement_load(version=version)

    # then: the H100 cannot take its 20 GiB; the A100 takes the estimate
    assert (placement.device, placement.reserved_bytes) == (a100, 12 * GIB)


def test_weights_larger_than_the_hosts_available_memory_are_refused_on_the_web_side(dispatched: list) -> None:
    version = lm(70, vram_estimate={"weights": 64 * GIB, "total": 70 * GIB})
    sim = simulated(capacity_gib=100)
    reports_free(sim, 100 * GIB, host_free_bytes=20 * GIB)

    with pytest.raises(placing.PlacementRefused) as refused:
        placing.placement_load(version=version, device=sim)

    assert f"needs {format_bytes(70 * GIB)}" in str(refused.value)
    assert f"its host has {format_bytes(20 * GIB)} available" in str(refused.value)


def test_the_placements_api_says_where_a_figure_was_measured(client_as: Client) -> None:
    on_sim = PlacementFactory(device=simulated(), state=P.LOADED, measured_bytes=7 * MB)
    on_gpu = PlacementFactory(device=gpu(H100), state=P.LOADED, measured_bytes=20 * GIB)
    unmeasured = PlacementFactory(device=gpu(H100), state=P.REQUESTED)
    viewer = client_as(Role.VIEWER)

    def measured_on(p: Placement) -> Any:
        response = viewer.get(f"/api/v1/placements/{p.pk}/")
        assert response.status_code == 200
        return response.json()["measured_on"]

    assert measured_on(on_sim) == "host memory"
    assert measured_on(on_gpu) == H100
    assert measured_on(unmeasured) is None


def test_the_placements_page_says_where_a_figure_was_measured(client_as: Client) -> None:
    PlacementFactory(device=simulated(), state=P.LOADED, measured_bytes=7 * MB)
    PlacementFactory(device=gpu(A100), state=P.LOADED, measured_bytes=20 * GIB)

    page = client_as(Role.VIEWER).get(reverse("serving:placements")).content.decode()

    assert f'{shown(7 * MB)} <span class="muted">in host memory</span>' in page
    assert f'{shown(20 * GIB)} <span class="muted">in {A100}</span>' in page


def test_a_devices_live_list_says_what_its_placement_measured_in(client_as: Client) -> None:
    placement = PlacementFactory(device=simulated(), state=P.LOADED, measured_bytes=7 * MB)

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert f'{shown(7 * MB)} <span class="muted">measured in host memory</span>' in block
