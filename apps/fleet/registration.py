"""Nodes coming and going: registration by a starting worker, heartbeats, and the sweep that
marks silent nodes offline (their devices unavailable; apps.fleet.signals.node_offline tells
the apps above, and serving marks what the node held lost)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.fleet import services, signals, telemetry
from apps.fleet.devices.base import DeviceInfo, NodeInfo
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.fleet.models import Device, Node

log = logging.getLogger(__name__)


def node_register(*, name: str, info: NodeInfo, devices: Sequence[DeviceInfo]) -> tuple[Node, list[Device]]:
    """Record a node and its devices as a starting worker found them. Safe to repeat, and
    safe when several workers of one node start at once (the loser of a race retries)."""
    for attempt in range(3):
        try:
            return _register(name=name, info=info, devices=devices)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def _register(*, name: str, info: NodeInfo, devices: Sequence[DeviceInfo]) -> tuple[Node, list[Device]]:
    now = timezone.now()
    fields = {
        "hostname": info.hostname,
        "cpu_model": info.cpu_model,
        "cpu_count": info.cpu_count,
        "ram_bytes": info.ram_bytes,
        "driver_version": info.driver_version,
        "cuda_version": info.cuda_version,
        "backend": info.backend,
        "last_heartbeat_at": now,
    }
    node, created = Node.objects.select_for_update().get_or_create(name=name, defaults=fields)
    if not created:
        for key, value in fields.items():
            setattr(node, key, value)
        node.save(update_fields=[*fields, "updated_at"])
        if node.state == NodeState.OFFLINE and services.node_set_state(node=node, state=NodeState.ONLINE):
            _announce(node, NodeState.ONLINE, "a worker registered it")

    existing = {(d.kind, d.index): d for d in node.devices.select_for_update()}
    seen: list[Device] = []
    for found in devices:
        device = existing.pop((found.kind, found.index), None)
        # A GPU moved here from another node (or slot): its old row gives the UUID up.
        for stale in Device.objects.filter(uuid=found.uuid).exclude(pk=getattr(device, "pk", None)):
            stale.uuid = f"{found.uuid}~{stale.pk}"
            stale.save(update_fields=["uuid", "updated_at"])
        if device is None:
            device = Device(node=node, kind=found.kind, index=found.index)
        device.uuid = found.uuid
        device.name = found.name
        device.simulated = found.simulated
        device.memory_total_bytes = found.memory_total_bytes
        device.capacity_bytes = found.capacity_bytes
        device.save()
        # Back from unavailable: presumed healthy until its first reading says otherwise.
        if device.health == DeviceHealth.UNAVAILABLE:
            services.device_set_health(device=device, health=DeviceHealth.HEALTHY)
        seen.append(device)
    for gone in existing.values():
        if gone.health != DeviceHealth.UNAVAILABLE:
            services.device_set_health(
                device=gone,
                health=DeviceHealth.UNAVAILABLE,
                reason="not found when the node's worker last started",
            )
    services.node_devices_offered(node=node, offered=seen)
    return node, seen


def node_heartbeat(*, name: str) -> NodeState | None:
    """Mark the node seen now; its state, or None when it is not registered (any more)."""
    updated = Node.objects.filter(name=name).update(last_heartbeat_at=timezone.now())
    if not updated:
        return None
    return NodeState(Node.objects.filter(name=name).values_list("state", flat=True).get())


def nodes_mark_offline(*, now: datetime | None = None) -> list[str]:
    """Mark every node silent for longer than MOC_NODE_OFFLINE_AFTER_S offline; their names."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.MOC_NODE_OFFLINE_AFTER_S)
    silent = Node.objects.filter(
        state__in=[NodeState.ONLINE, NodeState.DRAINING], last_heartbeat_at__lt=cutoff
    ).values_list("pk", flat=True)
    return [name for pk in silent if (name := _mark_offline(pk, cutoff))]


@transaction.atomic
def _mark_offline(pk: int, cutoff: datetime) -> str | None:
    node = Node.objects.select_for_update().get(pk=pk)
    # A heartbeat may have landed since the query above: only the still-silent go.
    if node.last_heartbeat_at is None or node.last_heartbeat_at >= cutoff:
        return None
    if not services.node_set_state(node=node, state=NodeState.OFFLINE):
        return None
    seen = node.last_heartbeat_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    reason = f"no heartbeat from node {node.name} since {seen}"
    for device in node.devices.exclude(health=DeviceHealth.UNAVAILABLE):
        services.device_set_health(device=device, health=DeviceHealth.UNAVAILABLE, reason=reason)
    signals.node_offline.send(sender=Node, node=node, reason=reason)
    log.warning("node %s is offline: %s", node.name, reason)
    _announce(node, NodeState.OFFLINE, reason)
    return node.name


def _announce(node: Node, state: NodeState, reason: str) -> None:
    """Tell live pages, once the change is committed; a node gone offline leaves the snapshot."""

    def send() -> None:
        try:
            client = redis_client()
            if state == NodeState.OFFLINE:
                telemetry.forget(client, node.name)
            telemetry.publish(
                client,
                telemetry.node_state_message(
                    node=node.name, node_id=node.pk, at=time.time(), state=state.value, reason=reason
                ),
            )
        except Exception as exc:  # live pages catch up on their next snapshot
            log.warning("could not announce node %s %s: %s", node.name, state.value, exc)

    transaction.on_commit(send)
