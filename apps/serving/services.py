"""Writes to serving's tables: the life of a placement.

Every state change goes through the placement state machine with a conditional UPDATE
(apps.core.transitions), so a retried or duplicated task never moves a row twice.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.transitions import transition
from apps.fleet.domain.states import PLACEABLE_HEALTH
from apps.fleet.models import Device
from apps.models.models import ModelVersion
from apps.models.selectors import version_unusable
from apps.serving.domain.states import PLACEMENT, PLACEMENT_ACTIVE, PlacementState
from apps.serving.models import Placement

DEFAULT_KEEP_ALIVE_S = 300


@transaction.atomic
def placement_request(
    *,
    version: ModelVersion,
    device: Device,
    reserved_bytes: int,
    pinned: bool = False,
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S,
    depends_on: Placement | None = None,
    requested_by: Any = None,
) -> Placement:
    """Record a request for `version` on `device`, holding `reserved_bytes` of its memory.

    Refuses a version that failed validation or is archived, a device that cannot take
    work, and a second active placement of the version on the same device. Choosing the
    device and making room is apps.serving.placing's job, which calls this once it has.
    """
    if (why := version_unusable(version)) is not None:
        raise ValidationError({"version": why})
    if device.health not in PLACEABLE_HEALTH:
        raise ValidationError({"device": f"{device} is {device.health} and takes no new placements."})
    if reserved_bytes <= 0:
        raise ValidationError({"reserved_bytes": "Must be more than 0."})
    duplicate = ValidationError({"version": f"{version} already has an active placement on {device}."})
    if Placement.objects.filter(version=version, device=device, state__in=PLACEMENT_ACTIVE).exists():
        raise duplicate
    try:
        with transaction.atomic():
            placement = Placement.objects.create(
                version=version,
                device=device,
                reserved_bytes=reserved_bytes,
                pinned=pinned,
                keep_alive_s=keep_alive_s,
                depends_on=depends_on,
                requested_by=requested_by,
            )
    except IntegrityError as exc:  # a concurrent request won the race the check above lost
        raise duplicate from exc
    return placement


@transaction.atomic
def placement_move(
    *,
    placement: Placement,
    to: PlacementState,
    error: str = "",
    error_class: str = "",
    end_reason: str = "",
    measured_bytes: int | None = None,
    load_seconds: float | None = None,
) -> bool:
    """Move a placement along its life; False if another writer moved it first.

    LOADED records when (and, if measured, how much memory it took and how long loading
    took); a final state records when it ended and, for FAILED and LOST, why.
    """
    old = placement.state
    now = timezone.now()
    changes: dict[str, object] = {}
    if to == PlacementState.LOADED:
        changes["loaded_at"] = now
        if measured_bytes is not None:
            changes["measured_bytes"] = measured_bytes
        if load_seconds is not None:
            changes["load_seconds"] = load_seconds
    if to.value in PLACEMENT.terminal:
        changes["ended_at"] = now
    if error:
        changes["error"] = error
    if error_class:
        changes["error_class"] = error_class
    if end_reason:
        changes["end_reason"] = end_reason[:300]
    if not transition(placement, to, machine=PLACEMENT, **changes):
        return False
    audit.record("state", placement, changes={"state": [old, to.value]})
    return True
