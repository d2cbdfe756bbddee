"""Who takes a deployment's traffic (split_from), and which side of the split, stable or canary,
answers a request (side_for). Pure Python.

A request with a key is sticky: the key hashes to a point in 0..99 that never changes, and it goes
to the canary when that point is below the canary's share. Raising the share therefore only moves
keys from stable to canary, never back, and every process agrees without sharing any state. A
request without a key goes by a random draw in [0, 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from apps.deployments.domain.states import ReleaseState

# "fallback": a release rolled back from being stable answers while the release traffic went back
# to has nothing loaded yet (apps.deployments.traffic).
Side = Literal["stable", "canary", "fallback"]
STABLE: Side = "stable"
CANARY: Side = "canary"
FALLBACK: Side = "fallback"
# A release rolling out takes traffic in these states (held by a person included) once it has a share.
TAKING_TRAFFIC = frozenset({ReleaseState.PROGRESSING.value, ReleaseState.PAUSED.value})


class Rolling(Protocol):
    """What split_from reads of a release."""

    @property
    def pk(self) -> Any: ...

    @property
    def state(self) -> str: ...

    @property
    def traffic_percent(self) -> int: ...


R = TypeVar("R", bound=Rolling)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Split(Generic[R]):
    """Who takes the deployment's traffic: stable, and the canary with its share."""

    stable: R | None
    canary: R | None
    canary_percent: int

    @property
    def stable_percent(self) -> int:
        return 100 - self.canary_percent


def split_from(stable: R | None, open_releases: Iterable[R]) -> Split[R]:
    """The split, from the deployment's stable release and its open releases: the canary is the
    newest open release that takes traffic (progressing or paused, with a share above 0) and is
    not stable itself. There is at most one open release; should there be more, every reader
    still picks the same one."""
    stable_pk = None if stable is None else stable.pk
    taking = [
        r for r in open_releases if r.state in TAKING_TRAFFIC and r.traffic_percent > 0 and r.pk != stable_pk
    ]
    canary = max(taking, key=lambda r: r.pk, default=None)
    return Split(stable, canary, 0 if canary is None else canary.traffic_percent)


def key_point(key: str) -> int:
    """The key's fixed point in 0..99: the same in every process and on every run (unlike hash())."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def side_for(key: str | None, canary_percent: int, draw: float) -> Side:
    """The side a request goes to when the canary takes `canary_percent` of traffic; `draw` (in
    [0, 1)) decides a request without a key."""
    if canary_percent <= 0:
        return STABLE
    if canary_percent >= 100:
        return CANARY
    point = key_point(key) if key is not None else draw * 100
    return CANARY if point < canary_percent else STABLE


def in_order(
    stable: T | None, canary: T | None, canary_percent: int, key: str | None, draw: float
) -> list[tuple[Side, T]]:
    """The sides to try, in order: the one side_for chose (the canary when nothing is stable), then
    the other, should the first have nothing loaded; sides that hold nothing are left out."""
    chosen = side_for(key, canary_percent, draw) if stable is not None else CANARY
    sides = [(STABLE, stable), (CANARY, canary)]
    if chosen == CANARY:
        sides.reverse()
    return [(side, held) for side, held in sides if held is not None]
