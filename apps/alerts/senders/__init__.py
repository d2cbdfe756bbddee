"""How each kind of channel turns a group of alerts into a body, and sends a body.

Every sender has `compose(channel, alerts, group_labels, *, now) -> str` (the exact body kept on the
Delivery, so what was sent can be read back and a retry sends the same bytes; Alertmanager's
firing endsAt alone is set at each attempt) and
`send(channel, body, *, timeout_s, now) -> Outcome` (one attempt; never raises for a failure of
the receiver, which the Outcome names).
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR_CHARS = 200


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: delivered or not, the HTTP status if one came back, and why it failed."""

    ok: bool
    status: int | None = None
    error: str = ""
