"""State machines owned by core."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class DeliveryState(StrEnum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    POISONED = "poisoned"


D = DeliveryState
# RUNNING -> RUNNING is a redelivery after the worker died mid-task. INTERRUPTED marks a
# task its worker was still running when told to shut down: it either finishes in the soft
# shutdown window or is handed back to the broker, and its redelivery is not a crash.
DELIVERY = StateMachine(
    "task delivery",
    DeliveryState,
    initial=D.RUNNING,
    transitions={
        D.RUNNING: {D.RUNNING, D.INTERRUPTED, D.RETRYING, D.SUCCEEDED, D.FAILED, D.POISONED},
        D.INTERRUPTED: {D.RUNNING, D.RETRYING, D.SUCCEEDED, D.FAILED},
        D.RETRYING: {D.RUNNING},
    },
)
# States in which a worker may still be executing the task body.
IN_HAND = frozenset({D.RUNNING.value, D.INTERRUPTED.value})
