"""What a device offers MOC, by the pure rules every backend uses, and the host's memory as a process
in a container sees it."""

from __future__ import annotations

import pytest

from apps.fleet.domain.capacity import HostMemory, capped_by_host, gpu_capacity, host_capacity, within_cgroup

MiB = 1024**2
GiB = 1024**3
MACHINE = HostMemory(total_bytes=64 * GiB, available_bytes=48 * GiB)


def test_a_gpu_offers_its_memory_less_a_reserve_for_contexts_and_fragments() -> None:
    assert gpu_capacity(80 * GiB) == 76 * GiB
    assert gpu_capacity(4 * GiB) == 4 * GiB - 512 * MiB


def test_the_hosts_share_of_ram_is_split_among_the_devices_that_keep_weights_there() -> None:
    assert host_capacity(int(23.5 * GiB), 0.5, devices=4) == int(23.5 * GiB * 0.5) // 4


def test_host_memory_is_split_among_at_least_one_device() -> None:
    with pytest.raises(ValueError, match="at least one device"):
        host_capacity(GiB, 0.5, devices=0)


@pytest.mark.parametrize(
    ("simulated", "capacity", "capped"),
    [(True, int(11.75 * GiB), True), (True, 76 * GiB, False), (False, int(11.75 * GiB), False)],
)
def test_only_a_simulated_gpu_offering_less_than_its_card_reads_as_capped_by_host_memory(
    simulated: bool, capacity: int, capped: bool
) -> None:
    assert capped_by_host(simulated=simulated, memory_total_bytes=80 * GiB, capacity_bytes=capacity) is capped


@pytest.mark.parametrize(
    "limit",
    [None, "max\n", str(2**63 - 4096), str(128 * GiB), "", "garbage"],
    ids=["no-cgroup", "v2-unlimited", "v1-unlimited", "above-the-machine", "empty", "unreadable"],
)
def test_a_cgroup_that_does_not_limit_below_the_machine_leaves_its_figures(limit: str | None) -> None:
    assert within_cgroup(MACHINE, limit=limit, usage="1024", stat=None) == MACHINE


def test_a_cgroup_limit_bounds_total_and_available_by_what_the_cgroup_uses() -> None:
    seen = within_cgroup(MACHINE, limit=f"{8 * GiB}\n", usage=f"{6 * GiB}\n", stat=None)

    assert seen == HostMemory(total_bytes=8 * GiB, available_bytes=2 * GiB)


def test_a_cgroups_inactive_page_cache_counts_as_available() -> None:
    stat = f"anon {3 * GiB}\nfile {3 * GiB}\ninactive_anon 0\ninactive_file {GiB}\nactive_file {2 * GiB}\n"

    seen = within_cgroup(MACHINE, limit=str(8 * GiB), usage=str(6 * GiB), stat=stat)

    assert seen.available_bytes == 3 * GiB


def test_a_cgroup_never_makes_more_available_than_the_machine_has() -> None:
    tight = HostMemory(total_bytes=64 * GiB, available_bytes=GiB)

    assert within_cgroup(tight, limit=str(8 * GiB), usage="0", stat=None).available_bytes == GiB


def test_a_cgroup_over_its_limit_has_nothing_available() -> None:
    seen = within_cgroup(MACHINE, limit=str(8 * GiB), usage=str(9 * GiB), stat=None)

    assert seen.available_bytes == 0


def test_a_cgroup_whose_usage_cannot_be_read_is_bounded_by_its_limit_alone() -> None:
    assert within_cgroup(MACHINE, limit=str(8 * GiB), usage=None, stat=None) == HostMemory(8 * GiB, 8 * GiB)
