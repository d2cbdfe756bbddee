"""rollback: the release the deployment would go back to is still resident (blue-green), or its
version is still valid and fits somewhere the deployment may place it (the scheduler, dry run)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

from django.conf import settings

from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification.base import Context, Outcome
from apps.fleet.models import Device
from apps.models.selectors import version_unusable
from apps.serving.domain import eviction, scheduler
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.models import Placement
from apps.serving.placing import device_views
from apps.serving.placing.load import estimate_bytes, need_bytes

NAME = CheckName.ROLLBACK
DESCRIPTION = "The previous release is still resident, or still loadable: valid, and it fits"
TIMEOUT_S = 15.0


def run(ctx: Context) -> Outcome:
    previous = ctx.previous
    if previous is None:
        return Outcome(CheckStatus.SKIP, "first release: there is nothing to roll back to")
    version = previous.model_version
    evidence: dict[str, object] = {"previous_release": previous.pk, "version": version.pk}
    resident = list(
        previous.placements.filter(state=PlacementState.LOADED).select_related("device__node").order_by("pk")
    )
    if resident:
        where = ", ".join(str(p.device) for p in resident)
        return Outcome(
            CheckStatus.PASS,
            f"release #{previous.pk} ({version}) is still loaded on {where}: a rollback is a pointer flip",
            {**evidence, "resident": [p.pk for p in resident]},
        )
    if (why := version_unusable(version)) is not None:
        return Outcome(CheckStatus.FAIL, f"release #{previous.pk} cannot be loaded again: {why}", evidence)
    decision = fits(ctx)
    if isinstance(decision, scheduler.Refusal):
        return Outcome(
            CheckStatus.FAIL, f"release #{previous.pk} ({version}) would not fit: {decision.reason}", evidence
        )
    device = Device.objects.select_related("node").get(pk=decision.device_id)
    evidence.update(device=str(device), evicts=[r.placement_id for r in decision.evict])
    evicting = f", evicting {len(decision.evict)} idle placement(s)" if decision.evict else ""
    return Outcome(
        CheckStatus.PASS,
        f"release #{previous.pk} ({version}) is valid and would fit on {device}{evicting}",
        evidence,
    )


def fits(ctx: Context) -> scheduler.Decision | scheduler.Refusal:
    """Where the previous release's version would load now, asked of the scheduler without
    reserving anything, counting this release's own placements as gone (a rollback unloads them)."""
    assert ctx.previous is not None
    version = ctx.previous.model_version
    devices = Device.objects.select_related("node").order_by("pk")
    if ctx.deployment.device_id is not None:
        devices = devices.filter(pk=ctx.deployment.device_id)
    if ctx.deployment.node:
        devices = devices.filter(node__name=ctx.deployment.node)
    candidates = list(devices)
    now = time.time()
    going = Counter[int]()
    going_ids = set()
    for p in Placement.objects.filter(pk__in=[p.pk for p in ctx.placements], state__in=PLACEMENT_ACTIVE):
        going[p.device_id] += p.held_bytes
        going_ids.add(p.pk)
    views = [_without(view, going[view.id], going_ids) for view in device_views(candidates, now=now)]
    request = scheduler.Request(
        version_id=version.pk,
        need_bytes=estimate_bytes(version),
        need_on=need_bytes(version, candidates),
    )
    return scheduler.decide(
        request,
        views,
        now=now,
        policy=eviction.Policy(settings.MOC_EVICTION_POLICY),
        min_residency_s=settings.MOC_PLACEMENT_MIN_RESIDENCY_S,
    )


def _without(view: scheduler.DeviceView, freed: int, placement_ids: set[int]) -> scheduler.DeviceView:
    if not freed:
        return view
    return dataclasses.replace(
        view,
        placed_bytes=max(0, view.placed_bytes - freed),
        reported_free_bytes=None if view.reported_free_bytes is None else view.reported_free_bytes + freed,
        residents=tuple(r for r in view.residents if r.placement_id not in placement_ids),
    )
