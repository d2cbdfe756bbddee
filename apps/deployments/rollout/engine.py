"""The rollout engine: read a release into the rules' View, apply what they decide, again until
they say wait. Each move runs in its own transaction with the release's row locked, so two ticks
of one release (the beat's and a task's), or a tick and an operator's action, take turns and
the second sees what the first did: ticking is idempotent and safe to run twice at once."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

import redis
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.deployments import figures, verification
from apps.deployments.domain import analysis, rollout
from apps.deployments.domain.figures import Figures
from apps.deployments.domain.rollout import Act, Decision, View
from apps.deployments.domain.states import RELEASE_MOVING, ReleaseState, VerificationState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, Release, ReleaseEvent, VerificationRun
from apps.deployments.rollout import moves, replicas, timeline
from apps.serving.domain.states import PlacementState

log = logging.getLogger(__name__)
R, P = ReleaseState, PlacementState
Cause = ReleaseEvent.Cause
# Moves one tick makes at most: a whole release takes fewer; the bound only stops a bug looping.
MAX_MOVES = 25


def tick(*, release_id: int) -> None:
    """Move the release as far as it can go now."""
    for _ in range(MAX_MOVES):
        if not _move_once(release_id):
            return
    log.warning("release %s still moving after %s moves in one tick", release_id, MAX_MOVES)


def due_release_ids(now: datetime | None = None) -> list[int]:
    """Releases the beat ticks: moving ones; promoted ones whose previous release's keep window is
    over while it still holds replicas; ended ones that still hold replicas."""
    now = now or timezone.now()
    serving = list(replicas.SERVING)
    found = Release.objects.filter(
        Q(state__in=RELEASE_MOVING)
        | Q(state=R.PROMOTED, previous_kept_until__lte=now, previous_release__placements__state__in=serving)
        | Q(state__in=rollout.ENDED, placements__state__in=serving)
    )
    return sorted(set(found.values_list("pk", flat=True)))


def advance_all() -> int:
    """Tick every release that is due (the beat's task); one failing release does not stop the others."""
    ids = due_release_ids()
    for release_id in ids:
        try:
            tick(release_id=release_id)
        except Exception:
            log.exception("ticking release %s failed", release_id)
    return len(ids)


def locked(release_id: int) -> Release | None:
    """The release with its row locked until the transaction ends."""
    return (
        Release.objects.select_for_update(of=("self",))
        .select_related("deployment", "model_version", "previous_release", "created_by")
        .filter(pk=release_id)
        .first()
    )


@transaction.atomic
def _move_once(release_id: int) -> bool:
    release = locked(release_id)
    if release is None:
        return False
    now = timezone.now()
    view = build_view(release, now)
    decision = rollout.decide(view)
    if decision.act == Act.WAIT:
        return False
    return apply(release, decision, view, now=now)


def rules_for(deployment: Deployment) -> analysis.Rules:
    return analysis.Rules(
        min_samples=deployment.min_samples,
        max_error_rate=deployment.slo_error_rate,
        max_p99_ms=deployment.slo_p99_ms,
        error_rate_delta_max=deployment.error_rate_delta_max,
        p99_ratio_max=deployment.p99_ratio_max,
    )


def step_analysis(release: Release, now: datetime) -> analysis.Analysis | None:
    """The current step's analysis over its window (since the baseline); None without figures."""
    base = release.analysis_baseline or {}
    previous_id = release.previous_release_id
    if previous_id is None or "at" not in base:
        return None
    try:
        found = figures.totals(redis_client(), [release.pk, previous_id])
    except redis.RedisError:
        return None
    seconds = max(0.0, now.timestamp() - float(base["at"]))
    canary = found[release.pk].minus(Figures.from_fields(base.get("canary", {})), seconds=seconds)
    stable = found[previous_id].minus(Figures.from_fields(base.get("stable", {})), seconds=seconds)
    return analysis.analyse(canary, stable, rules_for(release.deployment))


def _verification(release: Release) -> tuple[str | None, str]:
    run = VerificationRun.objects.filter(release=release).order_by("-created_at", "-id").first()
    if run is None:
        return None, ""
    if run.state == VerificationState.ERRORED:
        return run.state, run.error[:200]
    failed = run.checks.filter(status="fail", required=True).order_by("id")
    return run.state, "; ".join(
        f"{c.name} failed ({c.reason})" if c.reason else f"{c.name} failed" for c in failed
    )


def _replica_error(release: Release) -> str:
    broken = release.placements.filter(state__in=[P.FAILED, P.LOST]).select_related("device").first()
    if broken is None:
        return ""
    why = broken.error or broken.end_reason or broken.state
    return f"placement {broken.pk} on {broken.device} {broken.state}: {why}"


def build_view(release: Release, now: datetime) -> View:
    deployment = release.deployment
    state = release.state
    previous = release.previous_release
    counts = Counter(release.placements.values_list("state", flat=True))
    verification, verification_reason = _verification(release) if state == R.VERIFYING else (None, "")
    progressing_canary = state == R.PROGRESSING and release.strategy == Strategy.CANARY
    return View(
        strategy=release.strategy,
        state=state,
        now=now.timestamp(),
        steps=tuple(release.steps or ()),
        step_index=release.step_index,
        step_started_at=release.step_started_at.timestamp() if release.step_started_at else None,
        traffic_percent=release.traffic_percent,
        has_previous=previous is not None,
        previous_serving=replicas.releasable(previous).count() if previous else 0,
        previous_leaving=previous.placements.filter(state=P.UNLOADING).count() if previous else 0,
        previous_kept_until=release.previous_kept_until.timestamp() if release.previous_kept_until else None,
        replicas_wanted=deployment.replicas,
        replicas_active=counts[P.REQUESTED] + counts[P.LOADING] + counts[P.LOADED],
        replicas_loaded=counts[P.LOADED],
        replica_error=_replica_error(release) if state in (R.LOADING, R.VERIFYING) else "",
        verification=verification,
        verification_reason=verification_reason,
        analysis=step_analysis(release, now) if progressing_canary and release.step_started_at else None,
        step_pause_s=deployment.step_pause_s,
        step_timeout_s=deployment.step_timeout_s,
        on_inconclusive=deployment.on_inconclusive,
        finished_at=release.finished_at.timestamp() if release.finished_at else None,
        abort_grace_s=deployment.abort_grace_s,
        own_serving=replicas.releasable(release).count() if state in rollout.ENDED else 0,
    )


def _cause(view: View, decision: Decision) -> str:
    if view.analysis is not None and decision.act != Act.WAIT:
        return Cause.ANALYSIS
    if view.state == R.VERIFYING and view.verification is not None:
        return Cause.VERIFICATION
    return Cause.ENGINE


def apply(release: Release, decision: Decision, view: View, *, now: datetime) -> bool:
    """Make one decision real; False when it changed nothing (the tick stops)."""
    act, cause = decision.act, _cause(view, decision)
    if view.analysis is not None and act in (Act.SET_STEP, Act.PROMOTE, Act.ABORT, Act.ROLL_BACK, Act.PAUSE):
        timeline.record(
            release,
            kind="analysis",
            cause=Cause.ANALYSIS,
            message=f"{view.analysis.outcome}: {view.analysis.reason}",
            details=view.analysis.to_details(),
        )
    if act == Act.START:
        current = release.deployment.current_release_id
        moves.move(
            release,
            R.LOADING,
            cause=cause,
            message="loading its replicas",
            started_at=now,
            previous_release_id=current if current != release.pk else None,
        )
        release.previous_release = Release.objects.filter(pk=release.previous_release_id).first()
        return True
    if act == Act.UNLOAD_PREVIOUS:
        previous = release.previous_release
        assert previous is not None  # the rules ask only when there is one
        count = replicas.unload(previous, reason=f"release #{release.pk}: {decision.reason}")
        timeline.record(
            release,
            kind="note",
            cause=cause,
            message=f"asked {count} replica(s) of release #{previous.pk} to unload: {decision.reason}",
        )
        return count > 0
    if act == Act.LOAD:
        why = replicas.load(release, decision.count)
        if why:
            failed = rollout.load_failed(view, f"its replicas cannot be placed: {why}")
            return apply(release, failed, view, now=now)
        timeline.record(release, kind="note", cause=cause, message=f"asked for {decision.count} replica(s)")
        return True
    if act == Act.VERIFY:
        if release.state != R.VERIFYING:
            moves.move(release, R.VERIFYING, cause=cause, message="all replicas loaded; verifying")
        run = verification.verification_request(release=release)
        timeline.record(
            release, kind="verification", cause=cause, message=f"verification run #{run.pk} asked for"
        )
        return True
    if act == Act.PROGRESS:
        moves.move(release, R.PROGRESSING, cause=cause, message=decision.reason)
        return True
    if act == Act.SET_STEP:
        moves.set_step(
            release,
            index=decision.step_index,
            traffic=decision.traffic,
            now=now,
            cause=cause,
            message=decision.reason,
        )
        return True
    if act == Act.PROMOTE:
        moves.promote(release, now=now, cause=cause, reason=decision.reason)
        return True
    if act == Act.PAUSE:
        moves.pause(release, cause=cause, reason=decision.reason)
        return True
    if act in (Act.ABORT, Act.ROLL_BACK, Act.FAIL):
        to = {Act.ABORT: R.ABORTED, Act.ROLL_BACK: R.ROLLED_BACK, Act.FAIL: R.FAILED}[act]
        moves.end(release, to, now=now, cause=cause, reason=decision.reason)
        return True
    if act == Act.UNLOAD_OWN:
        count = replicas.unload(release, reason=f"release #{release.pk}: {decision.reason}")
        if count:
            timeline.record(release, kind="note", cause=cause, message=f"asked {count} replica(s) to unload")
        return False  # nothing more to do until they are gone
    return False
