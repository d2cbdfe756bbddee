"""Simulated GPUs: figures that follow what MOC placed and ran on them, deterministically."""

from __future__ import annotations

import psutil
import pytest

from apps.fleet.devices.base import DeviceReading, SimLoad
from apps.fleet.devices.sim import CONTEXT_BYTES, IDLE_C, SimBackend

GiB = 1024**3


class Loads:
    """What MOC put on each device, as the agent's load callable would report it."""

    def __init__(self) -> None:
        self.by_index: dict[int, SimLoad] = {}

    def __call__(self) -> dict[int, SimLoad]:
        return self.by_index


@pytest.fixture
def loads() -> Loads:
    return Loads()


@pytest.fixture
def sim(loads: Loads) -> SimBackend:
    """Three simulated GPUs on a host with RAM to spare for all of them."""
    return SimBackend(
        "sim-box-1", [(2, 24 * GiB), (1, 80 * GiB)], load=loads, host_ram_bytes=1024 * GiB, host_share=0.5
    )


def _run(sim: SimBackend, start: float, seconds: int, index: int = 0) -> list[DeviceReading]:
    """One reading of device `index` per second, as the agent samples at 1 Hz."""
    return [sim.sample(start + t)[index] for t in range(seconds + 1)]


def test_sim_devices_are_labelled_simulated_with_sizes_from_the_spec(sim: SimBackend) -> None:
    devices = sim.devices()

    assert [d.name for d in devices] == [
        "Simulated GPU 24 GiB",
        "Simulated GPU 24 GiB",
        "Simulated GPU 80 GiB",
    ]
    assert [d.index for d in devices] == [0, 1, 2]
    assert all(d.simulated and d.kind == "gpu" and d.uuid.startswith("SIM-") for d in devices)
    assert devices[2].memory_total_bytes == 80 * GiB
    assert devices[2].capacity_bytes == 76 * GiB
    assert len({d.uuid for d in devices}) == 3


def test_a_sim_gpu_offers_no_more_than_its_hosts_share_of_ram_and_says_what_it_simulates() -> None:
    host = int(23.5 * GiB)

    sim = SimBackend("sim-box-1", [(1, 80 * GiB)], host_ram_bytes=host, host_share=0.5)

    (big,) = sim.devices()
    assert (big.name, big.simulated, big.memory_total_bytes) == ("Simulated GPU 80 GiB", True, 80 * GiB)
    assert big.capacity_bytes == host // 2  # what a CPU device on this host would offer
    assert sim.host_cap_bytes == host // 2
    assert sim.capped() == [big]


def test_a_hosts_sim_gpus_split_its_share_of_ram_so_together_they_offer_no_more_than_the_host_has() -> None:
    host = int(23.5 * GiB)

    sim = SimBackend("sim-box-1", [(4, 80 * GiB)], host_ram_bytes=host, host_share=0.5)

    assert [d.capacity_bytes for d in sim.devices()] == [host // 2 // 4] * 4
    assert sum(d.capacity_bytes for d in sim.devices()) <= host // 2
    assert sim.capped() == sim.devices()


def test_a_sim_gpu_smaller_than_its_part_of_the_host_offers_what_its_card_would() -> None:
    sim = SimBackend("sim-box-1", [(1, 80 * GiB), (1, 8 * GiB)], host_ram_bytes=64 * GiB, host_share=0.5)

    big, small = sim.devices()
    assert big.capacity_bytes == 16 * GiB  # half of half the host
    assert small.capacity_bytes == 8 * GiB - 512 * 1024**2  # smaller than its part: as the card would
    assert sim.capped() == [big]


def test_sim_gpus_are_capped_by_this_machines_own_ram_by_default() -> None:
    total = psutil.virtual_memory().total

    (device,) = SimBackend("sim-box-1", [(1, 64 * 1024 * GiB)], host_share=0.25).devices()

    assert device.capacity_bytes == int(total * 0.25)


@pytest.mark.parametrize("share", [0, 1.5])
def test_sim_refuses_a_host_share_outside_zero_to_one(share: float) -> None:
    with pytest.raises(ValueError, match="capacity share must be above 0 and at most 1"):
        SimBackend("sim-box-1", [(1, GiB)], host_share=share)


def test_every_sim_reading_carries_the_hosts_available_memory(loads: Loads) -> None:
    available = iter([7 * GiB, 5 * GiB])
    sim = SimBackend("sim-box-1", [(2, 24 * GiB)], load=loads, host_available=lambda: next(available))
    loads.by_index[0] = SimLoad(placed_bytes=2 * GiB)

    first, second = sim.sample(0.0), sim.sample(1.0)

    assert [r.host_free_bytes for r in first] == [7 * GiB, 7 * GiB]
    assert [r.host_free_bytes for r in second] == [5 * GiB, 5 * GiB]
    assert first[0].mem_free_bytes == 24 * GiB - CONTEXT_BYTES - 2 * GiB  # the simulated figure stays


def test_sim_uuids_are_stable_for_a_node_name() -> None:
    first = [d.uuid for d in SimBackend("sim-box-1", [(2, GiB)]).devices()]

    assert [d.uuid for d in SimBackend("sim-box-1", [(2, GiB)]).devices()] == first
    assert [d.uuid for d in SimBackend("sim-box-2", [(2, GiB)]).devices()] != first


def test_sim_node_says_it_is_simulated(sim: SimBackend) -> None:
    node = sim.node_info()

    assert (node.backend, node.driver_version, node.cuda_version) == ("sim", "simulated", "")


def test_an_idle_sim_device_is_idle_and_cool(sim: SimBackend) -> None:
    reading = _run(sim, 1000.0, 60)[-1]

    assert (reading.gpu_util, reading.mem_used_bytes, reading.temperature_c) == (0.0, 0, IDLE_C)
    assert reading.mem_free_bytes == 24 * GiB
    assert reading.power_w == 60.0  # a fifth of a 24 GiB card's 300 W
    assert reading.error == ""


def test_placing_a_model_raises_memory_used_by_exactly_its_bytes(sim: SimBackend, loads: Loads) -> None:
    loads.by_index[1] = SimLoad(placed_bytes=5 * GiB)
    first = sim.sample(0.0)[1]
    loads.by_index[1] = SimLoad(placed_bytes=5 * GiB + 123_456_789)

    second = sim.sample(1.0)[1]

    assert first.mem_used_bytes == CONTEXT_BYTES + 5 * GiB
    assert second.mem_used_bytes - first.mem_used_bytes == 123_456_789
    assert second.mem_free_bytes == 24 * GiB - second.mem_used_bytes
    assert second.gpu_util == 0.0  # placed, but nothing runs


def test_sim_memory_used_never_exceeds_the_device(sim: SimBackend, loads: Loads) -> None:
    loads.by_index[0] = SimLoad(placed_bytes=30 * GiB)

    reading = sim.sample(0.0)[0]

    assert (reading.mem_used_bytes, reading.mem_free_bytes) == (24 * GiB, 0)


def test_a_running_job_drives_utilisation_up_within_seconds_and_heat_lags(
    sim: SimBackend, loads: Loads
) -> None:
    loads.by_index[0] = SimLoad(placed_bytes=GiB, running_jobs=1)

    readings = _run(sim, 0.0, 60)

    utils = [r.gpu_util for r in readings]
    temperatures = [r.temperature_c for r in readings]
    assert utils[0] == 0.0
    assert utils[10] >= 94.0
    assert utils == sorted(utils)
    assert temperatures == sorted(temperatures)
    assert temperatures[5] < 40.0  # heat lags utilisation
    assert 65.0 < temperatures[60] < IDLE_C + 0.45 * 95
    assert readings[60].power_w > 250.0
    assert readings[60].sm_clock_mhz > readings[0].sm_clock_mhz


def test_a_sim_device_cools_down_when_its_job_ends(sim: SimBackend, loads: Loads) -> None:
    loads.by_index[0] = SimLoad(running_jobs=1)
    hot = _run(sim, 0.0, 120)[-1]
    loads.by_index[0] = SimLoad()

    cooling = _run(sim, 121.0, 120)

    assert cooling[10].gpu_util < 1.0
    assert hot.temperature_c > cooling[30].temperature_c > cooling[120].temperature_c
    assert cooling[120].temperature_c < IDLE_C + 2


def test_requests_drive_utilisation_and_pcie_traffic(sim: SimBackend, loads: Loads) -> None:
    loads.by_index[2] = SimLoad(placed_bytes=GiB, requests_per_s=10.0)

    reading = _run(sim, 0.0, 30, index=2)[-1]

    assert reading.gpu_util == pytest.approx(20.0, abs=0.1)
    assert reading.pcie_rx_bytes_s > reading.pcie_tx_bytes_s > 0


def test_sim_figures_are_the_same_for_the_same_loads_and_times(loads: Loads) -> None:
    loads.by_index[0] = SimLoad(placed_bytes=GiB, running_jobs=2, requests_per_s=3.5)
    runs = [
        _run(SimBackend("sim-box-1", [(1, 24 * GiB)], load=loads, host_available=lambda: GiB), 50.0, 20)
        for _ in range(2)
    ]

    assert runs[0] == runs[1]


def test_a_failed_sim_device_reads_as_an_error_and_the_others_carry_on(sim: SimBackend) -> None:
    sim.fail(1, "XID 79: GPU has fallen off the bus")

    readings = sim.sample(0.0)

    assert readings[1].error == "XID 79: GPU has fallen off the bus"
    assert (readings[1].gpu_util, readings[1].mem_used_bytes, readings[1].mem_total_bytes) == (
        None,
        None,
        24 * GiB,
    )
    assert [readings[0].error, readings[2].error] == ["", ""]


def test_a_failed_sim_device_reads_again_once_recovered(sim: SimBackend) -> None:
    sim.fail(0)
    sim.sample(0.0)
    sim.recover(0)

    reading = sim.sample(1.0)[0]

    assert (reading.error, reading.gpu_util) == ("", 0.0)


def test_sim_keeps_the_last_loads_when_reading_them_fails(loads: Loads) -> None:
    loads.by_index[0] = SimLoad(placed_bytes=2 * GiB)
    answers = iter([loads(), RuntimeError("database is locked")])

    def flaky() -> dict[int, SimLoad]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sim = SimBackend("sim-box-1", [(1, 24 * GiB)], load=flaky)
    sim.sample(0.0)

    reading = sim.sample(1.0)[0]

    assert (reading.error, reading.mem_used_bytes) == ("", CONTEXT_BYTES + 2 * GiB)


def test_sim_without_a_load_callable_stays_idle() -> None:
    sim = SimBackend("sim-box-1", [(1, 24 * GiB)])

    reading = sim.sample(0.0)[0]

    assert (reading.gpu_util, reading.mem_used_bytes) == (0.0, 0)


@pytest.mark.parametrize("specs", [[], [(0, GiB)], [(1, 0)]])
def test_sim_refuses_no_devices_or_devices_without_memory(specs: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match="at least one device of a positive size"):
        SimBackend("sim-box-1", specs)
