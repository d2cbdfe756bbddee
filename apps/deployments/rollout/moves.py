"""The moves a release makes, for the engine and for operators alike: the state, the traffic
pointer, the deployment's current release, the timeline and the release_ended notice together.

Traffic moves by pointer: routing reads Release.traffic_percent and Deployment.current_release
live, so a move takes effect the moment it commits; loads and unloads follow.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import redis
from django.db import transaction

from apps.core.redis_clients import redis_client
from apps.core.transitions import transition, transitioned
from apps.deployments import figures, signals
from apps.deployments.domain.states import DEPLOYMENT, RELEASE, DeploymentState, ReleaseState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, Release
from apps.deployments.rollout import replicas, timeline

R = ReleaseState


def baseline(release: Release, now: datetime) -> dict[str, Any]:
    """The canary's and stable's request totals now: a step's window is measured from them. With
    Redis away the window counts from zero (all requests so far)."""
    out: dict[str, Any] = {"at": now.timestamp()}
    ids = [release.pk] + ([release.previous_release_id] if release.previous_release_id else [])
    try:
        found = figures.totals(redis_client(), ids)
    except redis.RedisError:
        return out
    out["canary"] = found[release.pk].to_fields()
    if release.previous_release_id:
        out["stable"] = found[release.previous_release_id].to_fields()
    return out


def move(
    release: Release,
    to: ReleaseState,
    *,
    cause: str,
    actor: Any = None,
    message: str = "",
    details: dict[str, Any] | None = None,
    **changes: Any,
) -> None:
    """Move `release` to `to` with `changes`, as one timeline entry (the row is locked by the caller)."""
    old = release.state
    transition(release, to, machine=RELEASE, **changes)
    timeline.record(
        release,
        kind="transition",
        cause=cause,
        actor=actor,
        message=message,
        from_state=old,
        to_state=to,
        details=details,
    )


def _ended(release: Release, outcome: str, reason: str) -> None:
    transaction.on_commit(
        lambda: signals.release_ended.send(sender=Release, release=release, outcome=outcome, reason=reason)
    )


def set_step(release: Release, *, index: int, traffic: int, now: datetime, cause: str, message: str) -> None:
    """Canary: go to step `index` with `traffic` percent; its analysis window starts now."""
    Release.objects.filter(pk=release.pk).update(
        step_index=index,
        traffic_percent=traffic,
        step_started_at=now,
        analysis_baseline=baseline(release, now),
        updated_at=now,
    )
    release.refresh_from_db()
    # A step is a move too, made by a plain UPDATE: say so, as transition() does, so that the data
    # plane's cached routes take the new share at once.
    transitioned.send(sender=Release, instance=release)
    note = f"step {index + 1} of {len(release.steps)}: {traffic}% of traffic"
    timeline.record(release, kind="traffic", cause=cause, message=f"{message}; {note}" if message else note)


def promote(release: Release, *, now: datetime, cause: str, actor: Any = None, reason: str) -> None:
    """All traffic to `release`, now the deployment's current release. The previous stays loaded
    for the blue-green window (else the abort grace), then the engine unloads it."""
    deployment = release.deployment
    previous_id = deployment.current_release_id if deployment.current_release_id != release.pk else None
    keep_s = (
        deployment.blue_green_keep_s if release.strategy == Strategy.BLUE_GREEN else deployment.abort_grace_s
    )
    move(
        release,
        R.PROMOTED,
        cause=cause,
        actor=actor,
        message=reason,
        traffic_percent=100,
        promoted_at=now,
        finished_at=now,
        resume_to="",
        reason=reason[:300],
        previous_release_id=previous_id or release.previous_release_id,
        previous_kept_until=now + timedelta(seconds=keep_s) if previous_id else None,
    )
    Deployment.objects.filter(pk=deployment.pk).update(current_release=release, updated_at=now)
    deployment.current_release = release
    # The release is no longer open: an on-demand deployment's stable replicas go when idle again.
    replicas.settle(deployment)
    if previous_id:
        Release.objects.filter(pk=previous_id).update(traffic_percent=0, updated_at=now)
    if deployment.state == DeploymentState.DRAFT:
        transition(deployment, DeploymentState.ACTIVE, machine=DEPLOYMENT)
    _ended(release, R.PROMOTED, reason)


def pause(release: Release, *, cause: str, actor: Any = None, reason: str) -> None:
    """Hold the release as it is (traffic included) until a person resumes it."""
    move(
        release,
        R.PAUSED,
        cause=cause,
        actor=actor,
        message=reason,
        resume_to=release.state,
        reason=reason[:300],
    )


def end(
    release: Release,
    to: ReleaseState,
    *,
    now: datetime,
    cause: str,
    actor: Any = None,
    reason: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Abort, roll back or fail: traffic leaves the release at once and returns to the previous
    release (current again if this one had been promoted), whose replicas are loaded again where
    they were unloaded. This release's own replicas go after the abort grace (the engine's tick),
    or at once if it never took traffic: no request is in flight there, and a recreate's previous
    release may need their room to load again. What cannot be loaded again now, the engine's
    tick asks for again until it is (the current release's missing replicas)."""
    deployment = release.deployment
    was_current = deployment.current_release_id == release.pk
    previous = release.previous_release
    took_traffic = bool(release.promoted_at or release.traffic_percent or release.step_started_at)
    move(
        release,
        to,
        cause=cause,
        actor=actor,
        message=reason,
        details=details,
        traffic_percent=0,
        finished_at=now,
        resume_to="",
        reason=reason[:300],
    )
    if was_current:
        Deployment.objects.filter(pk=deployment.pk, current_release=release).update(
            current_release=previous, updated_at=now
        )
        deployment.current_release = previous
        if previous is not None:
            Release.objects.filter(pk=previous.pk).update(traffic_percent=100, updated_at=now)
            previous.traffic_percent = 100
    # The release is no longer open: the stable's replicas, pinned while it was, settle to the
    # deployment's own setting again.
    replicas.settle(deployment)
    if not took_traffic and (count := replicas.unload(release, reason=f"release #{release.pk}: {reason}")):
        timeline.record(
            release,
            kind="note",
            cause=cause,
            message=f"it never took traffic: asked {count} replica(s) to unload at once",
        )
    if previous is not None and (why := replicas.restore(previous)):
        then = (
            "The deployment's next request asks again"
            if replicas.on_demand(previous)
            else "The engine asks again as room frees up; make room on its devices if it stays short"
        )
        timeline.record(
            release,
            kind="note",
            cause=cause,
            message=f"release #{previous.pk}'s replicas could not be loaded again yet: {why}. {then}",
        )
    _ended(release, to, reason)
