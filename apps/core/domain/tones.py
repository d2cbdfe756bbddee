"""How a state or status looks on a page: "ok", "warn" or "bad" (none for neutral).

Declared once, next to the state machine or enum it belongs to, and looked up by value by
the `badge` template filter. One value means one thing everywhere ("failed" is bad in every
table), so a value declared with two different tones is refused at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

# Any str subclass: state machines declare with their own StrEnum members as keys.
K = TypeVar("K", bound=str)

TONES = frozenset({"ok", "warn", "bad"})
_by_value: dict[str, str] = {}


def declare(tones: Mapping[K, str]) -> None:
    for key, tone in tones.items():
        value = str(key)
        if tone not in TONES:
            raise ValueError(f"tone of '{value}' must be one of {sorted(TONES)}, not '{tone}'")
        known = _by_value.setdefault(value, tone)
        if known != tone:
            raise ValueError(f"'{value}' is declared both '{known}' and '{tone}'; one value, one tone")


def tone(value: str) -> str:
    return _by_value.get(str(value), "")
