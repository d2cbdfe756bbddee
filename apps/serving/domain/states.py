"""The placement's state machine (pure Python, no Django)."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class PlacementState(StrEnum):
    REQUESTED = "requested"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"
    UNLOADED = "unloaded"
    FAILED = "failed"
    LOST = "lost"  # its worker died or stopped answering while it was active


P = PlacementState
# One placement row is one load's life. UNLOADED, FAILED and LOST are final: loading the
# version again makes a new row, so the history of every load stays readable.
# REQUESTED -> UNLOADED is a request cancelled before a worker took it.
PLACEMENT = StateMachine(
    "placement",
    PlacementState,
    initial=P.REQUESTED,
    transitions={
        P.REQUESTED: {P.LOADING, P.UNLOADED, P.FAILED, P.LOST},
        # LOADING -> UNLOADING: unloaded while it loads; the worker stops the load and frees what it took.
        P.LOADING: {P.LOADED, P.UNLOADING, P.FAILED, P.LOST},
        P.LOADED: {P.UNLOADING, P.FAILED, P.LOST},
        P.UNLOADING: {P.UNLOADED, P.FAILED, P.LOST},
    },
    tones={
        P.REQUESTED: "warn",
        P.LOADING: "warn",
        P.LOADED: "ok",
        P.UNLOADING: "warn",
        P.FAILED: "bad",
        P.LOST: "bad",
    },
)

# A placement in one of these holds (or is about to hold) memory on its device.
PLACEMENT_ACTIVE = frozenset({P.REQUESTED.value, P.LOADING.value, P.LOADED.value, P.UNLOADING.value})
# Active and not on its way out: asked for, loading, or loaded.
PLACEMENT_SERVING = PLACEMENT_ACTIVE - {P.UNLOADING.value}
# A placement in one of these is in a worker's memory, or on its way in or out.
PLACEMENT_ON_WORKER = frozenset({P.LOADING.value, P.LOADED.value, P.UNLOADING.value})
