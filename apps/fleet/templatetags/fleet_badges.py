"""Template filters for the fleet's pages: badge classes for states, and memory shares."""

from __future__ import annotations

from django import template

from apps.fleet.domain.states import DeviceHealth, NodeState, PlacementState

register = template.Library()

_BADGES = {
    DeviceHealth.HEALTHY: "ok",
    DeviceHealth.DEGRADED: "warn",
    DeviceHealth.UNHEALTHY: "bad",
    DeviceHealth.UNAVAILABLE: "bad",
    NodeState.ONLINE: "ok",
    NodeState.DRAINING: "warn",
    NodeState.OFFLINE: "bad",
    PlacementState.LOADED: "ok",
    PlacementState.REQUESTED: "warn",
    PlacementState.LOADING: "warn",
    PlacementState.UNLOADING: "warn",
    PlacementState.FAILED: "bad",
    PlacementState.LOST: "bad",
}


@register.filter
def state_badge(state: str) -> str:
    """The badge class (ok/warn/bad, or none) for a node state, device health or placement state."""
    return _BADGES.get(state, "")


@register.filter
def percent_of(part: int | None, whole: int | None) -> str:
    """`part` as a whole-number percentage of `whole`, or an empty string when unknown."""
    if part is None or not whole:
        return ""
    return f"{round(100 * part / whole)}%"
