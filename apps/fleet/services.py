"""Writes to the fleet: node state and device health.

Every state change goes through the table's state machine with a conditional UPDATE
(apps.core.transitions), so a retried or duplicated task never moves a row twice.
"""

from __future__ import annotations

from django.db import transaction

from apps.core import audit
from apps.core.transitions import transition
from apps.fleet.domain.states import DEVICE_HEALTH, NODE, DeviceHealth, NodeState
from apps.fleet.models import Device, Node


@transaction.atomic
def node_set_state(*, node: Node, state: NodeState) -> bool:
    """Move a node (drain, back online, offline); False if another writer moved it first."""
    old = node.state
    if not transition(node, state, machine=NODE):
        return False
    audit.record("state", node, changes={"state": [old, state.value]})
    return True


@transaction.atomic
def device_set_health(*, device: Device, health: DeviceHealth, reason: str = "") -> bool:
    """Record a device's new health and why; False if another writer moved it first."""
    old = device.health
    if not transition(device, health, machine=DEVICE_HEALTH, field="health", health_reason=reason[:300]):
        return False
    audit.record("health", device, changes={"health": [old, health.value]})
    return True
