"""How a release moves traffic to its version, and what each strategy needs (pure Python)."""

from __future__ import annotations

from enum import StrEnum


class Strategy(StrEnum):
    ALL_AT_ONCE = "all_at_once"  # every replica switches together
    CANARY = "canary"  # a share of traffic first, then the rest
    BLUE_GREEN = "blue_green"  # the new release stands up beside the old, then traffic flips


STRATEGY_CHOICES = [
    (Strategy.ALL_AT_ONCE.value, "All at once"),
    (Strategy.CANARY.value, "Canary"),
    (Strategy.BLUE_GREEN.value, "Blue-green"),
]

# A canary with no share given starts with this much of the traffic.
DEFAULT_CANARY_PERCENT = 10


def canary_percent_for(strategy: str, percent: int | None) -> int:
    """The share of traffic a new release starts with; raises ValueError with the reason."""
    if strategy == Strategy.CANARY:
        percent = DEFAULT_CANARY_PERCENT if percent is None else percent
        if not 1 <= percent <= 99:
            raise ValueError("A canary takes between 1 and 99 percent of the traffic.")
        return percent
    if percent:
        raise ValueError(f"Only the canary strategy takes a share of traffic; '{strategy}' moves all of it.")
    return 0
