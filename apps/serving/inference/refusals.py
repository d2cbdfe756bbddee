"""`Refused`, what every refusal of an inference request raises, and how soon each says to try
again. Its own module because every step of the request refuses: the flow (__init__), the
checks on the placements' workers (liveness), the version not loaded (absent) and the hand-off
(handoff) all build one."""

from __future__ import annotations

from dataclasses import dataclass

from apps.serving.domain.errors import ErrorClass, Refusal

# What a request refused for Redis says of it (where it is and the client's error go to the log).
REDIS_UNREACHABLE = "MOC's Redis (REDIS_URL), which every request goes through, is unreachable"

# How soon to try again: after the broker could not be reached, while a lost placement's version
# loads again, after a queue had its bound of requests waiting.
BROKER_RETRY_S = 5
RELOADING_RETRY_S = 5
BUSY_RETRY_S = 1


@dataclass
class Refused(Exception):
    """A request MOC answered without a model's answer: the HTTP status, and why.

    For a caller that judges versions by their refusals (a deployment's canary analysis), not
    sent to the API: `waited_s`, how long the request waited for a slot in its bulkhead before it
    was refused (not the version's time), and `process_bound`, refused by this web process's own
    bound on requests waiting on devices (whatever they wait for), before any placement."""

    status: int
    reason: str
    error_class: str = ""
    retry_after_s: int | None = None
    field: str = ""
    waited_s: float = 0.0
    process_bound: bool = False

    def __str__(self) -> str:
        return self.reason


# The refusals both request paths (the sync one in __init__, the data plane's in aio) raise alike;
# `version` is the version as the caller names it.


def redis_unreachable(version: object) -> Refused:
    return Refused(
        503,
        f"{version} cannot be asked now: {REDIS_UNREACHABLE}.",
        Refusal.BROKER_UNAVAILABLE,
        BROKER_RETRY_S,
    )


def bulkhead_full(version: object, reason: str, retry_after_s: int) -> Refused:
    return Refused(429, f"{version} is busy: {reason}", Refusal.BULKHEAD_FULL, retry_after_s)


def slot_wait_used_up(version: object, waited_s: float, timeout_s: float) -> Refused:
    """The wait for a slot used the time up: the bulkhead's refusal, charged to no placement."""
    why = f"{version} waited {waited_s:.1f} s for a free slot, all of its {timeout_s:g} s."
    return Refused(504, why, Refusal.BULKHEAD_FULL)


def breaker_open(version: object, reason: str, retry_after_s: float) -> Refused:
    return Refused(
        503, f"{version} is not answering: {reason}", Refusal.BREAKER_OPEN, max(1, round(retry_after_s))
    )


def timed_out(version: object, timeout_s: float) -> Refused:
    return Refused(504, f"{version} did not answer within {timeout_s:g} s.", ErrorClass.TIMEOUT)
