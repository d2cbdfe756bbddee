"""The alert state machine (Prometheus' alert lifecycle).

An alert is pending while its condition holds for less than the rule's `for` duration,
firing once it has held that long, and resolved when the condition stops holding. A
pending alert whose condition stops before the duration is resolved without ever firing.
Resolved is final: the next time the condition holds is a new alert.
"""

import datetime as dt
from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


A = AlertState
ALERT = StateMachine(
    "alert",
    AlertState,
    initial=A.PENDING,
    transitions={
        A.PENDING: {A.FIRING, A.RESOLVED},
        A.FIRING: {A.RESOLVED},
    },
)

OPEN = frozenset({A.PENDING.value, A.FIRING.value})


def ack_in_force(
    acknowledged_at: dt.datetime | None, expires_at: dt.datetime | None, now: dt.datetime
) -> bool:
    """Whether an acknowledgement mutes its alert at `now`: given, and not expired."""
    return acknowledged_at is not None and (expires_at is None or expires_at > now)
