"""How a release moves traffic to its version, and what each strategy needs (pure Python)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class Strategy(StrEnum):
    RECREATE = "recreate"  # unload the old, load the new, verify, switch
    CANARY = "canary"  # the new beside the old, then a share of traffic step by step
    BLUE_GREEN = "blue_green"  # the new (green) beside the old (blue), verified, then all traffic flips


STRATEGY_CHOICES = [
    (Strategy.RECREATE.value, "Recreate"),
    (Strategy.CANARY.value, "Canary"),
    (Strategy.BLUE_GREEN.value, "Blue-green"),
]

# A canary with no steps given moves its share of traffic through these.
DEFAULT_CANARY_STEPS = (10, 50, 100)
MAX_STEPS = 20


def steps_for(strategy: str, steps: Sequence[int] | None) -> list[int]:
    """The canary's traffic steps in percent, ending at 100; raises ValueError with the reason.

    The other strategies take no steps: recreate and blue-green move all traffic at once."""
    if strategy != Strategy.CANARY:
        if steps:
            raise ValueError(f"Only the canary strategy takes steps; '{strategy}' moves all traffic at once.")
        return []
    chosen = list(steps or DEFAULT_CANARY_STEPS)
    if len(chosen) > MAX_STEPS:
        raise ValueError(f"At most {MAX_STEPS} steps.")
    if any(not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= 100 for s in chosen):
        raise ValueError("Each step is a whole percentage between 1 and 100.")
    if any(b <= a for a, b in zip(chosen, chosen[1:], strict=False)):
        raise ValueError(f"Steps must rise: {chosen} does not.")
    if chosen[-1] != 100:
        raise ValueError(f"The last step must be 100 (all traffic), so the split adds up; got {chosen[-1]}.")
    return chosen
