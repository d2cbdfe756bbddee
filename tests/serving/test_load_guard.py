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


def test_a_load_stopped_past_its_limit_says_what_it_took_against_its_reservation_and_what_to_do() -> None:
    why = overrun(int(3.1 * GiB), reserved_bytes=GiB, limit=int(1.5 * GiB), stopped=True)

    assert why == (
        "took 3.1 GiB, over its 1.0 GiB reservation (a load may take up to 1.5 GiB), so it was stopped."
        " Validate the version again, or raise MOC_LOAD_GUARD_MARGIN if that size is genuine"
    )


def test_a_load_judged_once_its_call_returned_says_what_it_built_was_dropped() -> None:
    why = overrun(int(3.1 * GiB), reserved_bytes=GiB, limit=int(1.5 * GiB), stopped=False)

    assert "(a load may take up to 1.5 GiB), so what it built was dropped. Validate" in why


def test_a_figure_that_counts_more_than_the_load_says_what_else_it_counts() -> None:
    why = overrun(
        int(3.1 * GiB),
        reserved_bytes=GiB,
        limit=int(1.5 * GiB),
        stopped=False,
        requests_beside=1,
        device_wide=True,
    )

    assert "; the figure counts other processes on the device and 1 request running beside it too, so" in why


def test_a_host_with_room_for_the_reservation_takes_the_load() -> None:
    assert host_shortfall(10 * GiB, reserved_bytes=10 * GiB) is None


def test_a_host_short_of_the_reservation_refuses_the_load_saying_both_figures() -> None:
    why = host_shortfall(int(9.1 * GiB), reserved_bytes=int(24.5 * GiB))

    assert why == (
        "the host has 9.1 GiB of memory available and this load reserves 24.5 GiB;"
        " the device keeps its weights in host memory"
    )


def test_what_other_loads_on_the_host_were_promised_is_not_available_to_this_one() -> None:
    why = host_shortfall(10 * GiB, reserved_bytes=4 * GiB, promised_bytes=7 * GiB)

    assert why == (
        "the host has 10.0 GiB of memory available, 7.0 GiB of it promised to other loads not yet done"
        " on its devices, and this load reserves 4.0 GiB; the device keeps its weights in host memory"
    )
    assert host_shortfall(10 * GiB, reserved_bytes=3 * GiB, promised_bytes=7 * GiB) is None
