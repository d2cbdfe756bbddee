"""The split between stable and canary: who takes traffic (split_from, one rule for the page and
the request path), sticky by key, monotone in the canary's share, a draw without a key."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import dataclass

import pytest

from apps.deployments.domain.split import key_point, side_for, split_from
from apps.deployments.domain.states import ReleaseState

KEYS = [f"user-{i}" for i in range(2_000)]


def test_the_same_key_goes_to_the_same_side_every_time() -> None:
    for key in KEYS[:200]:
        sides = {side_for(key, 50, random.random()) for _ in range(5)}
        assert len(sides) == 1


def test_a_keys_point_is_the_same_in_another_process() -> None:
    """Web processes must agree: Python's own hash() of a str differs from process to process."""
    code = "from apps.deployments.domain.split import key_point; print(key_point('user-7'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert int(out.stdout) == key_point("user-7")


def test_raising_the_share_only_moves_keys_from_stable_to_canary() -> None:
    shares = [0, 1, 10, 25, 50, 90, 99, 100]
    for key in KEYS:
        sides = [side_for(key, share, 0.0) for share in shares]
        # Once a key reaches the canary it stays there at every larger share.
        first = sides.index("canary")
        assert sides[first:] == ["canary"] * (len(shares) - first)


@pytest.mark.parametrize("share", [10, 50, 90])
def test_keys_spread_close_to_the_share(share: int) -> None:
    canary = sum(side_for(key, share, 0.0) == "canary" for key in KEYS)

    assert abs(canary / len(KEYS) - share / 100) < 0.04


@pytest.mark.parametrize(
    ("draw", "side"), [(0.0, "canary"), (0.099, "canary"), (0.1, "stable"), (0.99, "stable")]
)
def test_without_a_key_the_draw_decides(draw: float, side: str) -> None:
    assert side_for(None, 10, draw) == side


@pytest.mark.parametrize("key", [None, "user-1", ""])
def test_no_share_is_all_stable_and_a_full_share_all_canary(key: str | None) -> None:
    assert side_for(key, 0, 0.0) == "stable"
    assert side_for(key, 100, 0.999) == "canary"


@dataclass(frozen=True)
class Rel:
    pk: int
    state: str = ReleaseState.PROGRESSING.value
    traffic_percent: int = 0


STABLE_REL = Rel(1, ReleaseState.PROMOTED.value, 100)


def test_the_split_is_stable_alone_without_a_release_taking_traffic() -> None:
    for rolling in (
        [],
        [Rel(2, ReleaseState.VERIFYING.value, 0)],
        [Rel(2, ReleaseState.PROGRESSING.value, 0)],
    ):
        split = split_from(STABLE_REL, rolling)
        assert (split.stable, split.canary, split.canary_percent, split.stable_percent) == (
            STABLE_REL,
            None,
            0,
            100,
        )


@pytest.mark.parametrize("state", [ReleaseState.PROGRESSING.value, ReleaseState.PAUSED.value])
def test_a_release_progressing_or_paused_with_a_share_is_the_canary(state: str) -> None:
    canary = Rel(2, state, 30)

    split = split_from(STABLE_REL, [canary])

    assert (split.canary, split.canary_percent, split.stable_percent) == (canary, 30, 70)


def test_the_stable_release_is_never_its_own_canary() -> None:
    assert (
        split_from(Rel(1, ReleaseState.PAUSED.value, 100), [Rel(1, ReleaseState.PAUSED.value, 100)]).canary
        is None
    )


def test_of_several_open_releases_every_reader_picks_the_newest_taking_traffic() -> None:
    """The page's rule took the first open release, the request path's the first taking traffic:
    with a pending release beside a progressing one they disagreed."""
    pending, older, newer = (
        Rel(9, ReleaseState.PENDING.value),
        Rel(3, traffic_percent=10),
        Rel(5, traffic_percent=40),
    )

    for order in ([pending, older, newer], [newer, pending, older], [older, newer, pending]):
        split = split_from(STABLE_REL, order)
        assert (split.canary, split.canary_percent) == (newer, 40)


def test_a_first_release_rolling_out_has_no_stable_beside_it() -> None:
    split = split_from(None, [Rel(2, traffic_percent=100)])

    assert (split.stable, split.canary_percent, split.stable_percent) == (None, 100, 0)
