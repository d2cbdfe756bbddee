"""A notification's delivery: its states and when a failed attempt is tried again."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first attempt, or its next one after a failure
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last attempt


FIRST_RETRY_S = 10.0
MAX_RETRY_S = 600.0


def retry_delay_s(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from
    FIRST_RETRY_S, at most MAX_RETRY_S."""
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2.0 ** max(0, attempts - 1))
