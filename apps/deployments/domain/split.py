"""Which side of a deployment's split, stable or canary, answers a request (pure Python).

A request with a key is sticky: the key hashes to a point in 0..99 that never changes, and it goes
to the canary when that point is below the canary's share. Raising the share therefore only moves
keys from stable to canary, never back, and every process agrees without sharing any state. A
request without a key goes by a random draw in [0, 1).
"""

from __future__ import annotations

import hashlib
from typing import Literal

Side = Literal["stable", "canary"]
STABLE: Side = "stable"
CANARY: Side = "canary"


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
