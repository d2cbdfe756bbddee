"""Unloading and pinning placements, and sending their work to the device's worker on commit."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.core import audit, dispatch
from apps.serving import messages, services
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.models import Placement

P = PlacementState


@transaction.atomic
def placement_unload(
    *, placement: Placement, reason: str, displaced_by: Placement | None = None, cascade: bool = True
) -> bool:
    """Take a placement off its device. One still waiting for a worker is simply cancelled; one
    loading or loaded goes UNLOADING and its worker frees it (and drains its requests first).
    Adapters built on it go with it. False when it was no longer active."""
    placement.refresh_from_db()
    if placement.state not in PLACEMENT_ACTIVE:
        return False
    if cascade:
        for dependent in Placement.objects.filter(depends_on=placement, state__in=PLACEMENT_ACTIVE):
            placement_unload(placement=dependent, reason=f"its base was unloaded ({reason})")
    if placement.state == P.REQUESTED:
        return services.placement_move(placement=placement, to=P.UNLOADED, end_reason=reason)
    # One already on its way out (keep-alive, a person) has had its unload sent; the placement
    # it was chosen to make room for must still wait for it to be gone.
    already = placement.state == P.UNLOADING
    if not already and not services.placement_move(placement=placement, to=P.UNLOADING, end_reason=reason):
        return False
    if displaced_by is not None:
        Placement.objects.filter(pk=placement.pk, displaced_by__isnull=True).update(displaced_by=displaced_by)
    if not already:
        send_on_commit(messages.PLACEMENT_UNLOAD, placement)
    return True


@transaction.atomic
def placement_pin(*, placement: Placement, pinned: bool) -> Placement:
    if placement.state not in PLACEMENT_ACTIVE:
        raise ValidationError(
            {"pinned": f"Placement {placement.pk} is {placement.state}: only active ones pin."}
        )
    Placement.objects.filter(pk=placement.pk).update(pinned=pinned, updated_at=timezone.now())
    placement.pinned = pinned
    audit.record("update", placement, changes={"pinned": [not pinned, pinned]})
    return placement


def send_on_commit(task: str, placement: Placement) -> None:
    """Send `task` (a name from apps.serving.messages) for `placement` to its device's worker once
    the transaction commits."""
    dispatch.send_on_commit(task, args=[placement.pk], queue=placement.device.queue)
