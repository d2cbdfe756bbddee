"""State machines owned by core."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class DeliveryState(StrEnum):
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    POISONED = "poisoned"


D = DeliveryState
# RUNNING -> RUNNING is a redelivery after the worker died mid-task.
DELIVERY = StateMachine(
    "task delivery",
    DeliveryState,
    initial=D.RUNNING,
    transitions={
        D.RUNNING: {D.RUNNING, D.RETRYING, D.SUCCEEDED, D.FAILED, D.POISONED},
        D.RETRYING: {D.RUNNING},
    },
)
