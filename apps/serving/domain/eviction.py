"""Which loaded models give way when a device needs room: the eviction policy.

Pure: the scheduler hands in what is resident on a device, how much memory it needs and the
current time; this module says which residents to unload, in order. Two policies:

- GDSF (GreedyDual-Size-Frequency, the default) keeps what is used often, is expensive to load
  and small, and ages everything else out through a per-device clock.
- LRU evicts the least recently used first; it is kept as the baseline the benchmarks compare with.

Pinned and busy residents are never victims, nor any loaded less than `min_residency_s` ago: that
churn floor stops two hot models from evicting each other on every request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

GiB = 1024**3


class Policy(StrEnum):
    GDSF = "gdsf"
    LRU = "lru"


@dataclass(frozen=True, slots=True)
class Resident:
    """One active placement on a device, as the scheduler sees it."""

    placement_id: int
    version_id: int
    size_bytes: int  # memory it holds
    loaded_at: float  # epoch seconds
    last_used: float  # epoch seconds (loaded_at if never used)
    uses: int  # requests served (frequency)
    load_seconds: float  # what loading it took (measured, else estimated) = reload cost
    pinned: bool = False
    busy: bool = False  # loading / unloading / serving right now: never a victim
    priority: float = 0.0  # GDSF value H kept for it (see gdsf_priority)


def gdsf_priority(*, clock: float, uses: int, load_seconds: float, size_bytes: int) -> float:
    """GreedyDual-Size-Frequency: H = clock + uses * load_seconds / size (in GiB, so numbers stay readable).

    The caller stores H on the placement at each use; when victims are evicted the device's clock becomes
    the largest H evicted (clock_after), so a model idle for long ages out relative to fresh ones.
    A zero-byte resident counts as one byte: it frees nothing, so it should never look cheap to evict.
    """
    return clock + uses * load_seconds / (max(size_bytes, 1) / GiB)


def evictable(r: Resident, *, now: float, min_residency_s: float) -> bool:
    """Whether it may be unloaded to make room: not pinned, not busy, and past the churn floor."""
    return not r.pinned and not r.busy and now - r.loaded_at >= min_residency_s


def _gdsf_key(r: Resident) -> tuple[float, float, int]:
    # Equal H (common among models loaded at one clock and never used since): the older use goes first.
    return (r.priority, r.last_used, r.placement_id)


def _lru_key(r: Resident) -> tuple[float, int]:
    return (r.last_used, r.placement_id)


def rank(residents: Iterable[Resident], *, policy: Policy) -> list[Resident]:
    """Victims first: GDSF lowest H, LRU oldest last use; remaining ties go to the lowest placement id."""
    return sorted(residents, key=_gdsf_key if policy == Policy.GDSF else _lru_key)


def choose_victims(
    residents: Sequence[Resident], need_bytes: int, *, now: float, policy: Policy, min_residency_s: float
) -> list[Resident] | None:
    """The residents to unload, in eviction order, to free at least `need_bytes`; None if impossible.

    Rule: take evictable residents in rank order until `need_bytes` are covered; the last one taken is
    always needed. Then walk back over the earlier ones, most valuable first (reverse rank order), and
    keep out each one the others already cover. The result is deterministic and minimal: dropping any
    victim leaves too little room (so one big later victim replaces several small ones it covers alone).
    """
    if need_bytes <= 0:
        return []
    allowed = [r for r in residents if evictable(r, now=now, min_residency_s=min_residency_s)]
    taken: list[Resident] = []
    freed = 0
    for r in rank(allowed, policy=policy):
        taken.append(r)
        freed += r.size_bytes
        if freed >= need_bytes:
            break
    else:
        return None
    keep = [True] * len(taken)
    for i in range(len(taken) - 2, -1, -1):
        if freed - taken[i].size_bytes >= need_bytes:
            freed -= taken[i].size_bytes
            keep[i] = False
    return [r for r, kept in zip(taken, keep, strict=True) if kept]


def clock_after(clock: float, victims: Sequence[Resident]) -> float:
    """The device's GDSF clock once `victims` are gone: the largest H evicted, never moving back."""
    return max(clock, max((v.priority for v in victims), default=clock))
