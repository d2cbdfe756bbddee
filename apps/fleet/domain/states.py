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
