"""A release's replicas: loading them (pinned, so keep-alive and eviction leave them alone) and
taking them off once no live release holds them.

One placement may serve several releases: the scheduler hands back a placement of the version
that is already loaded (a staging and a production deployment of the same version, or the same
version released again), so a placement leaves only when no other open or current release holds it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from apps.deployments.domain.states import RELEASE_OPEN
from apps.deployments.models import Deployment, Release
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement

P = PlacementState
SERVING = (P.REQUESTED, P.LOADING, P.LOADED)  # asked for, or in memory: something to unload


def releasable(release: Release, *, besides: Iterable[int] = ()) -> QuerySet[Placement]:
    """`release`'s placements that are serving and held by no other open or current release
    (other than those in `besides`)."""
    ignore = {release.pk, *besides}
    held = (
        Release.placements.through.objects.filter(placement_id__in=release.placements.values("pk"))
        .exclude(release_id__in=ignore)
        .filter(
            Q(release__state__in=RELEASE_OPEN)
            | Q(
                release_id__in=Deployment.objects.filter(current_release__isnull=False).values(
                    "current_release"
                )
            )
        )
        .values("placement_id")
    )
    return release.placements.filter(state__in=SERVING).exclude(pk__in=held)


def unload(release: Release, *, reason: str, besides: Iterable[int] = ()) -> int:
    """Unpin and unload what only `release` holds; how many were asked to go."""
    count = 0
    for placement in releasable(release, besides=besides).select_related("device"):
        Placement.objects.filter(pk=placement.pk).update(pinned=False)
        if placing.placement_unload(placement=placement, reason=reason):
            count += 1
    return count


def load(release: Release, count: int) -> str:
    """Ask for `count` more replicas of the release's version, each on a device it does not use
    yet, within the deployment's node or device. "" when all were asked for, else why not (the
    scheduler's reason)."""
    deployment = release.deployment
    for _ in range(count):
        taken = release.placements.filter(state__in=[*SERVING, P.UNLOADING]).values_list(
            "device_id", flat=True
        )
        try:
            placement = placing.placement_load(
                version=release.model_version,
                device=deployment.device,
                node=deployment.node or None,
                pinned=True,
                exclude_devices=list(taken),
                requested_by=release.created_by,
            )
        except placing.PlacementRefused as exc:
            return str(exc)
        except ValidationError as exc:
            return " ".join(exc.messages)
        if not placement.pinned:
            placing.placement_pin(placement=placement, pinned=True)
        release.placements.add(placement)
    return ""


def restore(release: Release) -> str:
    """Bring `release` (the one traffic returns to) back to its replicas where some were unloaded;
    "" when nothing was missing or all were asked for, else why not."""
    active = release.placements.filter(state__in=SERVING).count()
    missing = release.deployment.replicas - active
    return load(release, missing) if missing > 0 else ""
