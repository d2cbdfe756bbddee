"""Standing in for the worker and the verification run in rollout tests without a worker: replicas
become LOADED (or UNLOADED) through serving's own placement_move, verification runs end by their
rows, and requests are counted with figures.record as the traffic layer does."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import ReleaseState, VerificationState
from apps.deployments.models import Release, VerificationRun
from apps.deployments.rollout import tick
from apps.serving import services as serving
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement

P = PlacementState


def loaded(release: Release) -> None:
    """Its worker loaded every replica asked for."""
    for placement in Placement.objects.filter(releases=release, state__in=[P.REQUESTED, P.LOADING]):
        if placement.state == P.REQUESTED:
            serving.placement_move(placement=placement, to=P.LOADING)
        serving.placement_move(placement=placement, to=P.LOADED)


def unloaded(release: Release) -> None:
    """Its worker freed every replica asked to unload."""
    for placement in Placement.objects.filter(releases=release, state=P.UNLOADING):
        serving.placement_move(placement=placement, to=P.UNLOADED)


def verification_ends(release: Release, state: VerificationState = VerificationState.PASSED) -> None:
    run = VerificationRun.objects.filter(release=release).order_by("-id").first()
    assert run is not None, "no verification run was asked for"
    VerificationRun.objects.filter(pk=run.pk).update(state=state, finished_at=timezone.now())


def requests(release: Release, count: int, *, errors: int = 0, latency_ms: float = 20.0) -> None:
    client = redis_client()
    for i in range(count):
        outcome = Outcome.ERROR if i < errors else Outcome.OK
        figures.record(client, release_id=release.pk, outcome=outcome, latency_ms=latency_ms)


def step_started_ago(release: Release, seconds: float) -> None:
    """Move the current step's start back, as if its pause had run."""
    release.refresh_from_db()
    assert release.step_started_at is not None
    Release.objects.filter(pk=release.pk).update(
        step_started_at=release.step_started_at - dt.timedelta(seconds=seconds)
    )


def ended_ago(release: Release, seconds: float, **fields: Any) -> None:
    release.refresh_from_db()
    for name in ("finished_at", "previous_kept_until", *fields):
        value = getattr(release, name)
        if value is not None:
            Release.objects.filter(pk=release.pk).update(**{name: value - dt.timedelta(seconds=seconds)})


def through_verification(release: Release) -> Release:
    """Tick it through loading and verification, to its first traffic move."""
    tick(release_id=release.pk)
    loaded(release)
    tick(release_id=release.pk)
    verification_ends(release)
    tick(release_id=release.pk)
    release.refresh_from_db()
    return release


def state_of(release: Release) -> ReleaseState:
    release.refresh_from_db()
    return ReleaseState(release.state)
