"""The eviction policy: GDSF priorities, the churn floor, victim ranking and the fewest victims that fit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.serving.domain.eviction import (
    GiB,
    Policy,
    Resident,
    choose_victims,
    clock_after,
    evictable,
    gdsf_priority,
    rank,
)

NOW = 1_000_000.0


def _resident(
    placement_id: int,
    *,
    size_gib: float = 1.0,
    age_s: float = 3600.0,
    idle_s: float | None = None,
    uses: int = 1,
    load_seconds: float = 5.0,
    pinned: bool = False,
    busy: bool = False,
    priority: float | None = None,
) -> Resident:
    """A resident loaded `age_s` ago and last used `idle_s` ago (default: its placement id seconds ago)."""
    size_bytes = int(size_gib * GiB)
    return Resident(
        placement_id=placement_id,
        version_id=100 + placement_id,
        size_bytes=size_bytes,
        loaded_at=NOW - age_s,
        last_used=NOW - (placement_id if idle_s is None else idle_s),
        uses=uses,
        load_seconds=load_seconds,
        pinned=pinned,
        busy=busy,
        priority=(
            gdsf_priority(clock=0.0, uses=uses, load_seconds=load_seconds, size_bytes=size_bytes)
            if priority is None
            else priority
        ),
    )


def _ids(residents: list[Resident] | None) -> list[int] | None:
    return None if residents is None else [r.placement_id for r in residents]


def test_gdsf_priority_adds_reload_seconds_per_gib_times_uses_to_the_clock() -> None:
    assert gdsf_priority(clock=10.0, uses=3, load_seconds=4.0, size_bytes=2 * GiB) == 16.0


def test_gdsf_priority_of_a_zero_byte_resident_is_finite_and_high() -> None:
    priority = gdsf_priority(clock=0.0, uses=1, load_seconds=1.0, size_bytes=0)

    assert priority == float(GiB)


def test_evictable_accepts_an_idle_unpinned_resident_past_the_churn_floor() -> None:
    assert evictable(_resident(1, age_s=61.0), now=NOW, min_residency_s=60.0)


def test_evictable_refuses_a_pinned_resident() -> None:
    assert not evictable(_resident(1, pinned=True), now=NOW, min_residency_s=0.0)


def test_evictable_refuses_a_busy_resident() -> None:
    assert not evictable(_resident(1, busy=True), now=NOW, min_residency_s=0.0)


def test_evictable_refuses_a_resident_loaded_less_than_the_churn_floor_ago() -> None:
    assert not evictable(_resident(1, age_s=59.9), now=NOW, min_residency_s=60.0)


def test_evictable_accepts_a_resident_exactly_at_the_churn_floor() -> None:
    assert evictable(_resident(1, age_s=60.0), now=NOW, min_residency_s=60.0)


def test_rank_under_gdsf_puts_the_lowest_priority_first() -> None:
    residents = [_resident(1, priority=9.0), _resident(2, priority=3.0), _resident(3, priority=5.0)]

    assert _ids(rank(residents, policy=Policy.GDSF)) == [2, 3, 1]


def test_rank_under_lru_puts_the_oldest_last_use_first() -> None:
    residents = [_resident(1, idle_s=10.0), _resident(2, idle_s=300.0), _resident(3, idle_s=60.0)]

    assert _ids(rank(residents, policy=Policy.LRU)) == [2, 3, 1]


def test_rank_under_gdsf_breaks_equal_priorities_by_older_use_then_lower_id() -> None:
    residents = [
        _resident(3, priority=1.0, idle_s=5.0),
        _resident(2, priority=1.0, idle_s=50.0),
        _resident(1, priority=1.0, idle_s=5.0),
    ]

    assert _ids(rank(residents, policy=Policy.GDSF)) == [2, 1, 3]


def test_rank_under_lru_breaks_equal_last_uses_by_lower_id() -> None:
    residents = [_resident(3, idle_s=5.0), _resident(1, idle_s=5.0), _resident(2, idle_s=5.0)]

    assert _ids(rank(residents, policy=Policy.LRU)) == [1, 2, 3]


def _expensive_and_cheap() -> list[Resident]:
    # A 70B-class model used all day and slow to load, next to a small one someone touched a moment ago.
    expensive = _resident(1, size_gib=8.0, idle_s=600.0, uses=50, load_seconds=30.0)
    cheap = _resident(2, size_gib=8.0, idle_s=1.0, uses=1, load_seconds=1.0)
    return [expensive, cheap]


def test_gdsf_evicts_a_recently_touched_cheap_model_before_a_frequent_expensive_one() -> None:
    victims = choose_victims(_expensive_and_cheap(), GiB, now=NOW, policy=Policy.GDSF, min_residency_s=0.0)

    assert _ids(victims) == [2]


def test_lru_evicts_the_frequent_expensive_model_because_it_was_used_longer_ago() -> None:
    victims = choose_victims(_expensive_and_cheap(), GiB, now=NOW, policy=Policy.LRU, min_residency_s=0.0)

    assert _ids(victims) == [1]


@pytest.mark.parametrize("need", [0, -GiB])
def test_choose_victims_evicts_nothing_when_no_room_is_needed(need: int) -> None:
    residents = [_resident(1)]

    assert choose_victims(residents, need, now=NOW, policy=Policy.GDSF, min_residency_s=0.0) == []


def test_choose_victims_takes_residents_in_rank_order_until_enough_is_freed() -> None:
    residents = [_resident(i, size_gib=2.0, priority=float(i)) for i in (4, 1, 3, 2)]

    victims = choose_victims(residents, 5 * GiB, now=NOW, policy=Policy.GDSF, min_residency_s=0.0)

    assert _ids(victims) == [1, 2, 3]


def test_choose_victims_spares_earlier_victims_that_a_later_bigger_one_covers_alone() -> None:
    residents = [
        _resident(1, size_gib=1.0, priority=1.0),
        _resident(2, size_gib=1.0, priority=2.0),
        _resident(3, size_gib=10.0, priority=3.0),
    ]

    victims = choose_victims(residents, 10 * GiB, now=NOW, policy=Policy.GDSF, min_residency_s=0.0)

    assert _ids(victims) == [3]


def test_choose_victims_spares_the_most_valuable_earlier_victim_first() -> None:
    residents = [
        _resident(1, size_gib=2.0, priority=1.0),
        _resident(2, size_gib=3.0, priority=2.0),
        _resident(3, size_gib=6.0, priority=3.0),
    ]

    victims = choose_victims(residents, 8 * GiB, now=NOW, policy=Policy.GDSF, min_residency_s=0.0)

    assert _ids(victims) == [1, 3]


def test_choose_victims_returns_none_when_every_evictable_resident_is_not_enough() -> None:
    residents = [
        _resident(1, size_gib=4.0),
        _resident(2, size_gib=4.0),
        _resident(3, size_gib=8.0, pinned=True),
    ]

    assert choose_victims(residents, 9 * GiB, now=NOW, policy=Policy.GDSF, min_residency_s=0.0) is None


def test_choose_victims_never_takes_pinned_busy_or_young_residents() -> None:
    residents = [
        _resident(1, size_gib=8.0, priority=0.0, pinned=True),
        _resident(2, size_gib=8.0, priority=0.0, busy=True),
        _resident(3, size_gib=8.0, priority=0.0, age_s=10.0),
        _resident(4, size_gib=2.0, priority=50.0),
    ]

    victims = choose_victims(residents, 2 * GiB, now=NOW, policy=Policy.GDSF, min_residency_s=60.0)

    assert _ids(victims) == [4]


def test_clock_after_becomes_the_largest_evicted_priority() -> None:
    victims = [_resident(1, priority=7.0), _resident(2, priority=12.5)]

    assert clock_after(3.0, victims) == 12.5


def test_clock_after_never_moves_back() -> None:
    assert clock_after(20.0, [_resident(1, priority=7.0)]) == 20.0


def test_clock_after_no_victims_keeps_the_clock() -> None:
    assert clock_after(4.0, []) == 4.0


RESIDENTS = st.lists(
    st.builds(
        _resident,
        st.integers(min_value=1, max_value=10_000),
        size_gib=st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
        age_s=st.floats(min_value=0.0, max_value=300.0),
        idle_s=st.floats(min_value=0.0, max_value=300.0),
        uses=st.integers(min_value=0, max_value=20),
        load_seconds=st.floats(min_value=0.5, max_value=30.0),
        pinned=st.booleans(),
        busy=st.booleans(),
    ),
    max_size=12,
    unique_by=lambda r: r.placement_id,
)
NEED = st.integers(min_value=1, max_value=64 * GiB)
FLOOR = st.sampled_from([0.0, 60.0, 120.0])


@settings(max_examples=300, deadline=None, database=None)
@given(residents=RESIDENTS, need=NEED, policy=st.sampled_from(Policy), floor=FLOOR)
def test_choose_victims_frees_enough_with_evictable_residents_only_or_says_it_cannot(
    residents: list[Resident], need: int, policy: Policy, floor: float
) -> None:
    victims = choose_victims(residents, need, now=NOW, policy=policy, min_residency_s=floor)

    allowed = [r for r in residents if evictable(r, now=NOW, min_residency_s=floor)]
    if victims is None:
        assert sum(r.size_bytes for r in allowed) < need
    else:
        assert all(v in allowed for v in victims)
        assert sum(v.size_bytes for v in victims) >= need


@settings(max_examples=300, deadline=None, database=None)
@given(residents=RESIDENTS, need=NEED, policy=st.sampled_from(Policy), floor=FLOOR)
def test_choose_victims_never_evicts_one_it_does_not_need(
    residents: list[Resident], need: int, policy: Policy, floor: float
) -> None:
    victims = choose_victims(residents, need, now=NOW, policy=policy, min_residency_s=floor) or []

    freed = sum(v.size_bytes for v in victims)
    assert all(freed - v.size_bytes < need for v in victims)


@settings(max_examples=300, deadline=None, database=None)
@given(residents=RESIDENTS, need=NEED, policy=st.sampled_from(Policy), floor=FLOOR)
def test_choose_victims_lists_victims_in_rank_order(
    residents: list[Resident], need: int, policy: Policy, floor: float
) -> None:
    victims = choose_victims(residents, need, now=NOW, policy=policy, min_residency_s=floor) or []

    assert victims == rank(victims, policy=policy)
