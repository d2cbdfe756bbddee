"""Wake-on-request: a request for a deployment with nothing loaded starts loading its stable
release (the data plane then waits for it: apps.deployments.dataplane.waking).

Decided under the deployment's row lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE
transactions serialise writers), so however many requests arrive at once, in however many
processes, the first starts the load and the others find its replicas on their way and wait for
the same load. Only a wake that starts a load writes to the release's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.db import transaction

from apps.deployments.domain.states import RELEASE_OPEN, DeploymentState, ReleaseState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, Release
from apps.deployments.rollout import replicas, timeline
from apps.deployments.rollout.replicas import loaded_placements
from apps.serving.domain.states import PLACEMENT_SERVING, PlacementState

# How soon to try again when nothing can make room now: a replica's keep-alive, a job's end or an
# operator frees room on a scale of tens of seconds.
REFUSED_RETRY_S = 30
# ...and while a recreate release replaces the stable one (a load and a verification).
RECREATING_RETRY_S = 10
# Asked for or loading: on their way in (not UNLOADING, which is on its way out).
ON_ITS_WAY = sorted(PLACEMENT_SERVING - {PlacementState.LOADED.value})

WakeState = Literal["loaded", "loading", "refused"]
Readiness = Literal["loaded", "loading", "asleep"]


@dataclass(frozen=True, slots=True)
class Waking:
    """Where a wake left the deployment: its stable release has a replica that answers (loaded),
    one is on its way (loading), or none can be (refused: why, and when to try again; no
    Retry-After where trying again cannot help until an operator acts)."""

    state: WakeState
    reason: str = ""
    retry_after_s: int | None = None


def readiness(release: Release) -> Readiness:
    """Whether `release` has a replica that answers (loaded: on a device that may serve), only
    ones on their way in (loading), or none (asleep: scaled to zero, or all lost)."""
    if loaded_placements([release.pk]).exists():
        return "loaded"
    if release.placements.filter(state__in=ON_ITS_WAY).exists():
        return "loading"
    return "asleep"


@transaction.atomic
def wake(deployment_id: int) -> Waking:
    """Make sure the deployment's stable release has a replica loaded or on its way, loading its
    replicas if it has none."""
    deployment = (
        Deployment.objects.select_for_update(of=("self",))
        .select_related("current_release__model_version", "current_release__created_by", "device")
        .filter(pk=deployment_id)
        .first()
    )
    if deployment is None:
        return Waking("refused", f"no deployment #{deployment_id}")
    if deployment.state in (DeploymentState.PAUSED, DeploymentState.RETIRED):
        return Waking("refused", f"deployment {deployment.name} is {deployment.state}: it serves no requests")
    release = deployment.current_release
    if release is None:
        return Waking("refused", f"deployment {deployment.name} serves nothing: no release is live yet")
    if (found := readiness(release)) != "asleep":
        return Waking(found)
    if replacing := deployment.releases.filter(
        state__in=RELEASE_OPEN - {ReleaseState.PENDING.value}, strategy=Strategy.RECREATE
    ).first():
        # Recreate took the stable release's replicas down on purpose: loading them back would
        # only have the engine take them down again.
        return Waking(
            "refused",
            f"deployment {deployment.name} is being recreated: release #{replacing.pk} "
            f"({replacing.get_state_display().lower()}) answers once it is promoted",
            RECREATING_RETRY_S,
        )
    why = replicas.load(release, deployment.replicas)
    # Another deployment's replica of the version may have been taken as it is; or some were asked
    # for before the scheduler refused the rest: one answering is enough to serve.
    if (found := readiness(release)) != "asleep":
        timeline.record(release, kind="note", message=f"woken by a request: {found}")
        return Waking(found)
    return Waking(
        "refused",
        f"deployment {deployment.name} is asleep and cannot be woken now: "
        f"{why or 'it has no replicas to load (replicas is 0)'}",
        REFUSED_RETRY_S,
    )
