"""`Refused`, what every refusal of an inference request raises, and how soon each says to try
again. Its own module because every step of the request refuses: the flow (__init__), the
checks on the placements' workers (liveness), the version not loaded (absent) and the hand-off
(handoff) all build one."""

from __future__ import annotations

from dataclasses import dataclass

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
