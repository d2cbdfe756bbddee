"""Writes to the fleet: node state, device health, and which devices a node still offers.

Every state change goes through the table's state machine with a conditional UPDATE
(apps.core.transitions), so a retried or duplicated task never moves a row twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

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


@transaction.atomic
def node_devices_offered(*, node: Node, offered: Sequence[Device]) -> list[Device]:
    """Record what the node's starting worker offers: its other devices are retired from now on
    (kept for their history, never placed on, not counted), and those offered again are not.
    The devices newly retired."""
    for device in offered:
        if device.retired_at is not None:
            audit.record("return", device, changes={"retired_at": [device.retired_at.isoformat(), None]})
            device.retired_at = None
            device.save(update_fields=["retired_at", "updated_at"])
    now = timezone.now()
    retired = list(node.devices.filter(retired_at=None).exclude(pk__in=[d.pk for d in offered]))
    for device in retired:
        device.retired_at = now
        device.save(update_fields=["retired_at", "updated_at"])
        audit.record("retire", device, changes={"retired_at": [None, now.isoformat()]})
    return retired
