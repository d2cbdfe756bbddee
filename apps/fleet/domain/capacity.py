"""How much a device offers MOC: a GPU less what every process on it needs, a device that keeps its
models in host memory (the CPU, a simulated GPU) a share of the host's RAM; and the host's memory as
a process in a container sees it.

Pure: the device backends (apps.fleet.devices) read the figures, pages ask `capped_by_host`.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB
# MOC keeps this much of each GPU out of what it places: every process that uses the GPU
# holds a CUDA context (300-500 MiB) and allocators fragment, so a model sized to the last
# byte fails to load. 5%, and never less than 512 MiB on small cards.
RESERVE_SHARE = 0.05
RESERVE_MIN_BYTES = 512 * MiB


def gpu_capacity(total_bytes: int) -> int:
    """What MOC may place on a GPU with this much memory."""
    return max(0, total_bytes - max(int(total_bytes * RESERVE_SHARE), RESERVE_MIN_BYTES))


def host_capacity(host_ram_bytes: int, share: float, *, devices: int = 1) -> int:
    """The most each of a node's `devices` that keep weights in host memory (the CPU, simulated
    GPUs) may offer: together `share` of the host's RAM (MOC_CPU_CAPACITY_SHARE), which they share
    with the OS, the workers themselves and everything else on the host, split evenly. Split, not
    offered to each: every simulated GPU's worker loads into the same RAM."""
    if not 0 < share <= 1:
        raise ValueError(f"the CPU's capacity share must be above 0 and at most 1, not {share}")
    if devices < 1:
        raise ValueError(f"host memory is split among at least one device, not {devices}")
    return int(host_ram_bytes * share) // devices


def capped_by_host(*, simulated: bool, memory_total_bytes: int, capacity_bytes: int) -> bool:
    """Whether a simulated GPU offers less than the card it simulates would, because its models
    live in host memory (see host_capacity): what pages say beside its capacity."""
    return simulated and capacity_bytes < gpu_capacity(memory_total_bytes)


@dataclass(frozen=True, slots=True)
class HostMemory:
    total_bytes: int
    available_bytes: int


def within_cgroup(host: HostMemory, *, limit: str | None, usage: str | None, stat: str | None) -> HostMemory:
    """The host's memory (as psutil reads the machine) bounded by the memory cgroup this process runs
    in, from the texts of its files: `limit` is memory.max (v2: "max" when unlimited) or
    memory.limit_in_bytes (v1: a huge number when unlimited), `usage` memory.current or
    memory.usage_in_bytes, `stat` memory.stat. None for a file that is not there.

    A container's limit is what its processes can have, whatever the machine's RAM. What the cgroup
    uses includes the page cache, which the kernel reclaims before it kills anything, so its
    inactive file pages count as available (as `docker stats` and the kubelet's working set do)."""
    ceiling = _whole_number(limit)
    if ceiling is None or ceiling >= host.total_bytes:
        return host
    used = _whole_number(usage)
    if used is None:
        return HostMemory(ceiling, min(host.available_bytes, ceiling))
    working = max(0, used - _stat_value(stat, "inactive_file"))
    return HostMemory(ceiling, max(0, min(host.available_bytes, ceiling - working)))


def _whole_number(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:  # "max", empty, or not a number: no figure
        return None


def _stat_value(stat: str | None, key: str) -> int:
    for line in (stat or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _whole_number(value) or 0
    return 0
