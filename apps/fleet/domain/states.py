"""State machines owned by the fleet (pure Python, no Django)."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class NodeState(StrEnum):
    ONLINE = "online"
    DRAINING = "draining"  # up, but takes no new placements or jobs
    OFFLINE = "offline"  # its heartbeat stopped


N = NodeState
# A node registers when its first worker starts, so it begins ONLINE. An OFFLINE node
# comes back ONLINE when a worker registers again; draining is asked of a running node.
NODE = StateMachine(
    "node",
    NodeState,
    initial=N.ONLINE,
    transitions={
        N.ONLINE: {N.DRAINING, N.OFFLINE},
        N.DRAINING: {N.ONLINE, N.OFFLINE},
        N.OFFLINE: {N.ONLINE},
    },
    tones={N.ONLINE: "ok", N.DRAINING: "warn", N.OFFLINE: "bad"},
)


class DeviceHealth(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # works, with warnings (hot, throttled, correctable ECC errors)
    UNHEALTHY = "unhealthy"  # must not take work (XID errors, uncorrectable ECC)
    UNAVAILABLE = "unavailable"  # not seen: its node is offline or the device vanished


H = DeviceHealth
# An UNHEALTHY device earns trust back through DEGRADED, never straight to HEALTHY. One
# that was UNAVAILABLE is probed afresh when it reappears, so it may come back as anything.
DEVICE_HEALTH = StateMachine(
    "device health",
    DeviceHealth,
    initial=H.HEALTHY,
    transitions={
        H.HEALTHY: {H.DEGRADED, H.UNHEALTHY, H.UNAVAILABLE},
        H.DEGRADED: {H.HEALTHY, H.UNHEALTHY, H.UNAVAILABLE},
        H.UNHEALTHY: {H.DEGRADED, H.UNAVAILABLE},
        H.UNAVAILABLE: {H.HEALTHY, H.DEGRADED, H.UNHEALTHY},
    },
    tones={H.HEALTHY: "ok", H.DEGRADED: "warn", H.UNHEALTHY: "bad", H.UNAVAILABLE: "bad"},
)

# Devices in these states may be given new placements.
PLACEABLE_HEALTH = frozenset({H.HEALTHY.value, H.DEGRADED.value})


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
        # LOADING -> UNLOADING: unloaded while it loads; the worker frees it once the load ends.
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
# A placement in one of these is in a worker's memory, or on its way in or out.
PLACEMENT_ON_WORKER = frozenset({P.LOADING.value, P.LOADED.value, P.UNLOADING.value})
