"""Invariants the placement tests check against the database."""

from __future__ import annotations

from django.db.models import Q

from apps.fleet.models import Device
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.models import Placement


def reserved_within_capacity(device: Device) -> bool:
    """What the device's placements hold, leaving out victims whose memory is already promised to
    the placement they are evicted for, fits the device."""
    held = sum(
        p.held_bytes
        for p in Placement.objects.filter(device=device, state__in=PLACEMENT_ACTIVE).filter(
            Q(displaced_by__isnull=True) | ~Q(displaced_by__state__in=PLACEMENT_ACTIVE)
        )
    )
    return held <= device.capacity_bytes
