"""The split between stable and canary: sticky by key, monotone in the canary's share, a draw
without a key."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from apps.deployments.domain.split import key_point, side_for

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
