"""A placement whose model is gone from its worker (the worker restarted, the device or node was
lost): marked LOST, and its version loaded again where that can help. Written once for every path
that finds one: the web side of a request, the device worker, the node sweep."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from django.core.exceptions import ValidationError

from apps.core.templatetags.moc import when
from apps.core.workers import Silence
from apps.fleet.models import Device
from apps.serving import services
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from apps.serving.placing.load import PlacementRefused, placement_load

log = logging.getLogger(__name__)


class Reload(Enum):
    NO = "no"  # nothing to load it on: the node is gone, or the worker will preload what it should
    SAME_DEVICE = "same"  # the device is fine, its worker lost the model (a restart)
    ELSEWHERE = "elsewhere"  # the device looks lost: any other device, else its own after all


def placement_lost(
    placement: Placement,
    *,
    error: str,
    reload: Reload,
    error_class: str = ErrorClass.DEVICE_LOST,
    avoid: Iterable[int] = (),
) -> Placement | None:
    """Mark `placement` LOST with `error`; then, as `reload` says, load its version again. ELSEWHERE:
    on neither its device nor those in `avoid`, and where no other device can take it, on its own
    device after all: the device may only have looked lost (a worker taken for dead that is alive
    after all loads it; one really gone never takes the request, and the reaper ends it). An
    adapter is not loaded again on its own: its base was lost with it, and loading the adapter
    brings its base along when someone asks for it. The new placement, or None when it was
    already moved on, was not reloaded, or no device could take it (logged)."""
    if not services.placement_move(
        placement=placement, to=PlacementState.LOST, error_class=error_class, error=error
    ):
        return None
    if reload == Reload.NO or placement.depends_on_id is not None:
        return None
    try:
        if reload == Reload.ELSEWHERE:
            try:
                return _load_again(placement, exclude_devices=[placement.device_id, *avoid])
            except PlacementRefused as exc:
                log.info("no other device can take %s (%s); asking its own again", placement.version, exc)
        return _load_again(placement, device=placement.device)
    except (PlacementRefused, ValidationError) as exc:
        log.warning(
            "could not load %s again after placement %s was lost: %s", placement.version, placement.pk, exc
        )
        return None


def _load_again(placement: Placement, **where: Any) -> Placement:
    return placement_load(version=placement.version, requested_by=placement.requested_by, **where)


def worker_silence(device: Device, silence: Silence, *, now: float) -> str:
    """Why `device`'s worker is taken for dead, in words: its node, its queue, and since when
    ("node-b's worker for gpu.node-b.0 has been silent since 2026-01-05 12:03:04 (25 s)")."""
    moment = when(datetime.fromtimestamp(silence.since, tz=UTC))
    seconds = max(0, round(now - silence.since))
    if silence.last.stopped:
        return f"{device.node.name}'s worker for {silence.queue} stopped at {moment} ({seconds} s ago)"
    return f"{device.node.name}'s worker for {silence.queue} has been silent since {moment} ({seconds} s)"
