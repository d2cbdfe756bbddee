"""State machines owned by core."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class DeliveryState(StrEnum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    LOST = "lost"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    POISONED = "poisoned"


D = DeliveryState
# RUNNING -> RUNNING is a redelivery after the worker died mid-task. INTERRUPTED marks a
# task its worker was still running when told to shut down: it either finishes in the soft
# shutdown window or is handed back to the broker, and its redelivery is not a crash.
# LOST marks a task whose worker's heartbeat went (apps.core.delivery.deliveries_reconcile): the
# broker hands the message out again only after its visibility timeout, and the loss was counted
# when it was found, so that redelivery is not counted again. A worker taken for dead that was
# only silent may still finish it.
DELIVERY = StateMachine(
    "task delivery",
    DeliveryState,
    initial=D.RUNNING,
    transitions={
        D.RUNNING: {D.RUNNING, D.INTERRUPTED, D.LOST, D.RETRYING, D.SUCCEEDED, D.FAILED, D.POISONED},
        D.INTERRUPTED: {D.RUNNING, D.LOST, D.RETRYING, D.SUCCEEDED, D.FAILED},
        D.LOST: {D.RUNNING, D.RETRYING, D.SUCCEEDED, D.FAILED, D.POISONED},
        D.RETRYING: {D.RUNNING},
    },
)
# States in which a worker may still be executing the task body.
IN_HAND = frozenset({D.RUNNING.value, D.INTERRUPTED.value, D.LOST.value})
