"""A release's replicas: loading them (pinned, so keep-alive and eviction leave them alone) and
taking them off once no live release holds them.

Scale to zero: the stable release of a deployment that is not pinned keeps its replicas only
while they are used. Once promoted they are unpinned and given the deployment's keep-alive
(settle), so serving's placements_expire_idle unloads them when idle and eviction may take
them; a request loads them again (apps.deployments.wake, through load()), never the engine. A
release rolling out keeps its replicas pinned, whatever its deployment says, and so does the
stable release while a release is open on its deployment (stays_loaded): the canary's analysis
judges it against stable, which must not scale to zero under it. When the release ends, the
stable's replicas settle to the deployment's own setting again.

One placement may serve several releases: the scheduler hands back a placement of the version
that is already loaded (a staging and a production deployment of the same version, or the same
version released again), so a placement leaves only when no other open or current release holds it.
A retired deployment's current release holds nothing: its replicas go (deployment_released).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet

from apps.deployments.domain.states import RELEASE_OPEN, DeploymentState
from apps.deployments.models import Deployment, Release
from apps.deployments.rollout import timeline
from apps.fleet.domain.states import PLACEABLE_HEALTH
from apps.serving import placing
from apps.serving.domain.states import PLACEMENT_ACTIVE, PLACEMENT_SERVING, PlacementState
from apps.serving.models import Placement

P = PlacementState
Link = Release.placements.through  # which release holds which placement


def _stays_loaded() -> Q:
    """Deployments whose stable replicas stay pinned (loaded while idle): pinned ones, and any with
    a release open on it (the release's analysis needs stable)."""
    opened = Release.objects.filter(deployment=OuterRef("pk"), state__in=RELEASE_OPEN)
    return Q(pinned=True) | Q(Exists(opened))


def stays_loaded(deployment: Deployment) -> bool:
    """Whether `deployment`'s stable replicas are pinned now (_stays_loaded), read from the
    database, as callers hold rows moved a moment ago."""
    return Deployment.objects.filter(_stays_loaded(), pk=deployment.pk).exists()


def _holding(*, pinned: bool = False) -> Q:
    """Links whose release keeps the placement: an open release, or the current release of a
    deployment that is not retired (with `pinned`, of one whose stable stays loaded only: the
    links that keep it pinned)."""
    deployments = Deployment.objects.filter(_stays_loaded()) if pinned else Deployment.objects.all()
    current = (
        deployments.filter(current_release__isnull=False)
        .exclude(state=DeploymentState.RETIRED)
        .values("current_release")
    )
    return Q(release__state__in=RELEASE_OPEN) | Q(release_id__in=current)


def keep_alive_s(deployment: Deployment) -> int:
    """How long an unpinned deployment's idle replicas stay loaded."""
    return deployment.keep_alive_s or settings.MOC_DEPLOYMENT_KEEP_ALIVE_S


def on_demand(release: Release) -> bool:
    """Whether `release`'s replicas come and go with requests: it is the stable release of a
    deployment whose stable does not stay loaded (_stays_loaded). Read from the database, as
    callers hold rows moved a moment ago."""
    return (
        Deployment.objects.filter(pk=release.deployment_id, current_release=release)
        .exclude(_stays_loaded())
        .exists()
    )


def settle(deployment: Deployment) -> int:
    """Pin or unpin the stable release's replicas as the deployment says now (stays_loaded):
    pinned, or while a release is open on it, they stay loaded; else they get its keep-alive and go
    when idle. A replica another release keeps pinned (one rolling out, or the stable release of a
    deployment whose stable stays loaded) stays pinned. How many changed. Called when the setting
    changes, and when a release opens or ends."""
    release = deployment.current_release
    if release is None or deployment.state == DeploymentState.RETIRED:
        return 0
    serving = release.placements.filter(state__in=PLACEMENT_SERVING)
    # A direct update, as unload() does: the reaper times requests and loads by updated_at.
    if stays_loaded(deployment):
        return serving.filter(pinned=False).update(pinned=True)
    pinned_elsewhere = (
        Link.objects.filter(placement_id__in=release.placements.values("pk"))
        .exclude(release_id=release.pk)
        .filter(_holding(pinned=True))
        .values("placement_id")
    )
    keep = keep_alive_s(deployment)
    return (
        serving.exclude(pk__in=pinned_elsewhere)
        .exclude(pinned=False, keep_alive_s=keep)
        .update(pinned=False, keep_alive_s=keep)
    )


def loaded_placements(release_ids: Collection[int]) -> QuerySet[Placement]:
    """The placements that answer for these releases: loaded, on devices that may serve (a row per
    placement and release: `releases` names the release)."""
    return Placement.objects.filter(
        releases__in=release_ids, state=PlacementState.LOADED, device__health__in=PLACEABLE_HEALTH
    )


def releasable(release: Release, *, besides: Iterable[int] = ()) -> QuerySet[Placement]:
    """`release`'s placements that are serving and held by no other open or current release
    (other than those in `besides`)."""
    ignore = {release.pk, *besides}
    held = (
        Link.objects.filter(placement_id__in=release.placements.values("pk"))
        .exclude(release_id__in=ignore)
        .filter(_holding())
        .values("placement_id")
    )
    return release.placements.filter(state__in=PLACEMENT_SERVING).exclude(pk__in=held)


def has_releasable(field: str = "pk") -> Exists:
    """For filtering releases in one query: the release at `field` (the row's own pk, or e.g.
    "previous_release") has a placement releasable() would give."""
    others = (
        Link.objects.filter(placement_id=OuterRef("placement_id"))
        .exclude(release_id=OuterRef(OuterRef(field)))
        .filter(_holding())
    )
    return Exists(
        Link.objects.filter(release_id=OuterRef(field), placement__state__in=PLACEMENT_SERVING).exclude(
            Exists(others)
        )
    )


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
    yet, within the deployment's node or device: pinned, unless they are on demand (on_demand:
    then with the deployment's keep-alive, and a replica already loaded for someone else is left as
    it is). "" when all were asked for, else why not (the scheduler's reason)."""
    deployment = release.deployment
    sleeps = on_demand(release)
    for _ in range(count):
        taken = release.placements.filter(state__in=PLACEMENT_ACTIVE).values_list("device_id", flat=True)
        try:
            placement = placing.placement_load(
                version=release.model_version,
                device=deployment.device,
                node=deployment.node or None,
                pinned=not sleeps,
                keep_alive_s=keep_alive_s(deployment) if sleeps else None,
                exclude_devices=list(taken),
                requested_by=release.created_by,
            )
        except placing.PlacementRefused as exc:
            return str(exc)
        except ValidationError as exc:
            return " ".join(exc.messages)
        if not sleeps and not placement.pinned:
            placing.placement_pin(placement=placement, pinned=True)
        release.placements.add(placement)
    return ""


def deployment_released(*, deployment: Deployment) -> int:
    """Unpin and unload what `deployment`'s releases alone hold, for a deployment being retired;
    how many replicas were asked to go. Its own releases do not count as holding, so this works
    before or after the deployment's state says retired (deployment_retire calls it)."""
    ours = list(deployment.releases.values_list("pk", flat=True))
    total = 0
    for release in deployment.releases.filter(placements__state__in=PLACEMENT_SERVING).distinct():
        if count := unload(release, reason=f"deployment {deployment.name} was retired", besides=ours):
            timeline.record(
                release,
                kind="note",
                message=f"its deployment was retired: asked {count} replica(s) to unload",
            )
            total += count
    return total


def restore(release: Release) -> str:
    """Bring `release` (the one traffic returns to) back to its replicas where some were unloaded;
    "" when nothing was missing or all were asked for, else why not."""
    active = release.placements.filter(state__in=PLACEMENT_SERVING).count()
    missing = release.deployment.replicas - active
    return load(release, missing) if missing > 0 else ""
