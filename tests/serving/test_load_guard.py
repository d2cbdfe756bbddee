"""The load guard's rules: how much a load may take, and whether a host can take a load at all."""

from __future__ import annotations

import pytest

from apps.serving.domain.load_guard import MIN_MARGIN_BYTES, host_shortfall, limit_bytes, overrun

MiB = 1024**2
GiB = 1024**3


def test_a_load_may_take_its_reservation_plus_the_margins_share_of_it() -> None:
    assert limit_bytes(4 * GiB, margin=0.5) == 6 * GiB


def test_a_small_reservation_still_gets_the_minimum_margin() -> None:
    assert limit_bytes(8 * MiB, margin=0.5) == 8 * MiB + MIN_MARGIN_BYTES


def test_a_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin must be 0 or more"):
        limit_bytes(GiB, margin=-0.1)


def test_a_load_within_its_limit_goes_on() -> None:
    assert overrun(int(1.5 * GiB), reserved_bytes=GiB, limit=int(1.5 * GiB)) is None


def test_a_load_past_its_limit_is_stopped_saying_what_it_took_against_its_reservation() -> None:
    why = overrun(int(3.1 * GiB), reserved_bytes=GiB, limit=int(1.5 * GiB))

    assert why == (
        "took 3.1 GiB, over its 1.0 GiB reservation (a load may take up to 1.5 GiB);"
        " stopped, and what it took was freed"
    )


def test_a_host_with_room_for_the_reservation_takes_the_load() -> None:
    assert host_shortfall(10 * GiB, reserved_bytes=10 * GiB) is None


def test_a_host_short_of_the_reservation_refuses_the_load_saying_both_figures() -> None:
    why = host_shortfall(int(9.1 * GiB), reserved_bytes=int(24.5 * GiB))

    assert why == (
        "the host has 9.1 GiB of memory available and this load reserves 24.5 GiB;"
        " the device keeps its weights in host memory"
    )
