"""Serving's answers to what fleet announces (apps.fleet.signals) and the registry asks
(apps.models.signals), connected in ServingConfig.ready."""

from __future__ import annotations

import logging
from typing import Any

from apps.fleet.models import Node
from apps.models.models import ModelVersion
from apps.models.signals import rows_named
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.models import Placement
from apps.serving.placing.recovery import Reload, placement_lost

log = logging.getLogger(__name__)


def node_offline(sender: Any, *, node: Node, reason: str, **kwargs: Any) -> None:
    """What a node that went offline held is lost with it; its workers preload again when they return."""
    lost = list(Placement.objects.filter(device__node=node, state__in=PLACEMENT_ACTIVE))
    for placement in lost:
        placement_lost(placement, error=f"Lost: {reason}.", reload=Reload.NO, error_class="")
    if lost:
        log.warning("node %s is offline: %d placements lost", node.name, len(lost))


def version_moving(sender: Any, *, version: ModelVersion, **kwargs: Any) -> str | None:
    """An active placement of the version (loaded, or on its way in or out) keeps it from moving;
    one that ended is history, and follows the version to its new model."""
    active = Placement.objects.filter(version=version, state__in=PLACEMENT_ACTIVE)
    return rows_named("active placements", active)
