"""The rollout engine: read a release into the rules' View, apply what they decide, again until
they say wait.

A tick first decides from a plain read, with no lock and no write transaction: most ticks (a
step's pause, a blue-green window, a run under way) end there. Only to act does it lock the
release's row, read it again and decide again under the lock, and apply that decision in the
same transaction. So two ticks of one release (the beat's and a task's), or a tick and an
operator's action, take turns on the lock and the second acts on what the first left: ticking is
idempotent and safe to run twice at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import redis
from django.db import transaction
from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.core.redis_clients import redis_client
from apps.deployments import figures, verification
from apps.deployments.domain import analysis, rollout
from apps.deployments.domain.checks import CheckName
from apps.deployments.domain.figures import Figures
from apps.deployments.domain.rollout import Act, Decision, View
from apps.deployments.domain.states import RELEASE_MOVING, RELEASE_OPEN, ReleaseState, VerificationState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, Release, ReleaseEvent, VerificationRun
from apps.deployments.rollout import moves, replicas, timeline
from apps.deployments.verification.runner import STALE_AFTER
from apps.fleet.domain.states import PLACEABLE_HEALTH
from apps.models.selectors import version_unusable
from apps.serving.domain.states import PLACEMENT_SERVING, PlacementState
from apps.serving.models import Placement

log = logging.getLogger(__name__)
R, P, V = ReleaseState, PlacementState, VerificationState
Cause = ReleaseEvent.Cause
# Moves one tick makes at most: a whole release takes fewer; the bound only stops a bug looping.
MAX_MOVES = 25
# How a run the engine gave up on (its worker lost) is marked: its error starts so.
LOST = "lost:"


def tick(*, release_id: int) -> None:
    """Move the release as far as it can go now."""
    for _ in range(MAX_MOVES):
        if not _move_once(release_id):
            return
    log.warning("release %s still moving after %s moves in one tick", release_id, MAX_MOVES)


def due_release_ids(now: datetime | None = None) -> list[int]:
    """Releases the beat ticks, each because the rules may have something for it to do:
    - moving ones, of a deployment that is not paused or retired;
    - paused canaries still taking a share of traffic (their analysis goes on);
    - promoted ones whose previous release's keep window is over while it still holds replicas
      of its own;
    - ended ones that still hold replicas of their own;
    - the current release of a live, pinned deployment with no release under way, short of
      replicas (an unpinned one's come back with requests)."""
    now = now or timezone.now()
    live = list(rollout.LIVE)
    found: list[QuerySet[Release]] = [
        Release.objects.filter(state__in=RELEASE_MOVING, deployment__state__in=live),
        Release.objects.filter(state=R.PAUSED, strategy=Strategy.CANARY, traffic_percent__gt=0),
        Release.objects.filter(state=R.PROMOTED, previous_kept_until__lte=now).filter(
            replicas.has_releasable("previous_release")
        ),
        Release.objects.filter(state__in=rollout.ENDED).filter(replicas.has_releasable()),
        _short_current(live),
    ]
    return sorted({pk for query in found for pk in query.values_list("pk", flat=True)})


def _short_current(live: list[str]) -> QuerySet[Release]:
    serving = (
        Release.placements.through.objects.filter(
            release_id=OuterRef("pk"), placement__state__in=PLACEMENT_SERVING
        )
        .values("release_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    current = (
        Deployment.objects.filter(state__in=live, pinned=True, current_release__isnull=False)
        .exclude(releases__state__in=RELEASE_OPEN)
        .values("current_release")
    )
    return (
        Release.objects.filter(pk__in=current)
        .annotate(serving=Coalesce(Subquery(serving), Value(0)))
        .filter(serving__lt=F("deployment__replicas"))
    )


def advance_all() -> int:
    """Tick every release that is due (the beat's task); one failing release does not stop the others."""
    ids = due_release_ids()
    for release_id in ids:
        try:
            tick(release_id=release_id)
        except Exception:
            log.exception("ticking release %s failed", release_id)
    return len(ids)


def _release(release_id: int, *, lock: bool) -> Release | None:
    found = Release.objects.select_related("deployment", "model_version", "previous_release", "created_by")
    if lock:
        found = found.select_for_update(of=("self",))
    return found.filter(pk=release_id).first()


def locked(release_id: int) -> Release | None:
    """The release with its row locked until the transaction ends."""
    return _release(release_id, lock=True)


def _move_once(release_id: int) -> bool:
    """One move of the release; False when there is none to make now. The plain read decides
    whether there is anything to do; only then the lock (see the module's docstring)."""
    release = _release(release_id, lock=False)
    if release is None or rollout.decide(build_view(release, timezone.now())).act == Act.WAIT:
        return False
    return _act(release_id)


@transaction.atomic
def _act(release_id: int) -> bool:
    release = locked(release_id)
    if release is None:
        return False
    now = timezone.now()
    view = build_view(release, now)
    decision = rollout.decide(view)
    if decision.act == Act.WAIT:
        return False  # another tick or an action moved it meanwhile
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


@dataclass(frozen=True, slots=True)
class _Run:
    """The latest verification run of a release, as the rules need it."""

    state: str | None = None
    reason: str = ""  # the failed required checks, or why the run broke
    run_id: int | None = None
    since: datetime | None = None  # queued or started, while under way
    lost_before: int = 0  # runs given up on as lost just before it (_lost_in_a_row)
    rollback_failed: str = ""


def _verification(release: Release) -> _Run:
    runs = VerificationRun.objects.filter(release=release)
    run = runs.order_by("-created_at", "-id").first()
    if run is None:
        return _Run()
    lost_before = _lost_in_a_row(runs.exclude(pk=run.pk))
    if run.state == V.ERRORED:
        return _Run(run.state, run.error[:200], run.pk, lost_before=lost_before)
    if run.state in (V.QUEUED, V.RUNNING):
        since = run.started_at if run.state == V.RUNNING and run.started_at else run.created_at
        return _Run(run.state, "", run.pk, since=since, lost_before=lost_before)
    failed = list(run.checks.filter(status="fail", required=True).order_by("id"))
    return _Run(
        run.state,
        "; ".join(f"{c.name} failed ({c.reason})" if c.reason else f"{c.name} failed" for c in failed),
        run.pk,
        lost_before=lost_before,
        rollback_failed=next((c.reason or "failed" for c in failed if c.name == CheckName.ROLLBACK), ""),
    )


def _lost_in_a_row(earlier: QuerySet[VerificationRun]) -> int:
    """How many of the `earlier` runs were lost, counting back from the latest to the first that was
    not: a lost run gets one retry, and a run that ended (a retry that failed and was resumed, say)
    gives the next run lost its retry again."""
    lost = 0
    for state, error in earlier.order_by("-created_at", "-id").values_list("state", "error"):
        if state != V.ERRORED or not error.startswith(LOST):
            break
        lost += 1
    return lost


def _replica_error(release: Release) -> str:
    broken = release.placements.filter(state__in=[P.FAILED, P.LOST]).select_related("device").first()
    if broken is None:
        return ""
    why = broken.error or broken.end_reason or broken.state
    return f"placement {broken.pk} on {broken.device} {broken.state}: {why}"


def _fallback_waiting(release: Release) -> bool:
    """Whether traffic falls back to `release` (apps.deployments.traffic): a promoted release rolled
    back to its deployment's current release, which has a replica on its way but none that answers
    yet (loaded, on a device that may serve)."""
    current_id = release.deployment.current_release_id
    if (
        release.state != R.ROLLED_BACK
        or release.promoted_at is None
        or current_id is None
        or current_id != release.previous_release_id
    ):
        return False
    theirs = Placement.objects.filter(releases__pk=current_id)
    if theirs.filter(state=P.LOADED, device__health__in=PLACEABLE_HEALTH).exists():
        return False
    return theirs.filter(state__in=PLACEMENT_SERVING).exists()


def build_view(release: Release, now: datetime) -> View:
    deployment = release.deployment
    state = release.state
    previous = release.previous_release
    counts = Counter(release.placements.values_list("state", flat=True))
    run = _verification(release) if state == R.VERIFYING else _Run()
    canary_with_traffic = release.strategy == Strategy.CANARY and (
        state == R.PROGRESSING or (state == R.PAUSED and release.traffic_percent > 0)
    )
    recreate_loading = state == R.LOADING and release.strategy == Strategy.RECREATE
    promoted = state == R.PROMOTED
    current = promoted and deployment.current_release_id == release.pk
    own_serving = replicas.releasable(release).count() if state in rollout.ENDED else 0
    return View(
        strategy=release.strategy,
        state=state,
        now=now.timestamp(),
        deployment_live=deployment.state in rollout.LIVE,
        steps=tuple(release.steps or ()),
        step_index=release.step_index,
        step_started_at=release.step_started_at.timestamp() if release.step_started_at else None,
        traffic_percent=release.traffic_percent,
        has_previous=previous is not None,
        previous_serving=replicas.releasable(previous).count() if previous else 0,
        previous_leaving=previous.placements.filter(state=P.UNLOADING).count() if previous else 0,
        previous_kept_until=release.previous_kept_until.timestamp() if release.previous_kept_until else None,
        previous_unloadable=(version_unusable(previous.model_version) or "")
        if recreate_loading and previous
        else "",
        replicas_wanted=deployment.replicas,
        replicas_active=counts[P.REQUESTED] + counts[P.LOADING] + counts[P.LOADED],
        replicas_loaded=counts[P.LOADED],
        replica_error=_replica_error(release) if state in (R.LOADING, R.VERIFYING) else "",
        verification=run.state,
        verification_reason=run.reason,
        verification_run=run.run_id,
        verification_since=run.since.timestamp() if run.since else None,
        verification_stale_s=STALE_AFTER.total_seconds(),
        verification_lost_before=run.lost_before,
        rollback_failed=run.rollback_failed,
        analysis=step_analysis(release, now) if canary_with_traffic and release.step_started_at else None,
        step_pause_s=deployment.step_pause_s,
        step_timeout_s=deployment.step_timeout_s,
        on_inconclusive=deployment.on_inconclusive,
        finished_at=release.finished_at.timestamp() if release.finished_at else None,
        abort_grace_s=deployment.abort_grace_s,
        own_serving=own_serving,
        fallback_waiting=bool(own_serving) and _fallback_waiting(release),
        current=current,
        on_demand=current and not deployment.pinned,
        unloadable=(version_unusable(release.model_version) or "") if current else "",
        others_open=promoted
        and deployment.releases.filter(state__in=RELEASE_OPEN).exclude(pk=release.pk).exists(),
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
    if rollout.run_lost(view) and act in (Act.REVERIFY, Act.ROLL_BACK, Act.FAIL):
        _give_up(view)
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
            failed = rollout.load_failed(
                view,
                "its replicas cannot be placed",
                why,
                "Make room on the deployment's devices, or change its node or device, then release again",
            )
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
    if act == Act.REVERIFY:
        run = verification.verification_request(release=release)
        timeline.record(
            release, kind="verification", cause=cause, message=f"{decision.reason}: run #{run.pk}"
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
    if act == Act.RESTORE:
        return _restore(release, decision, cause)
    return False


def _give_up(view: View) -> None:
    """Mark the run the rules judged lost as errored, so its worker, if it comes back after all,
    can no longer finish it (the runner finishes only a RUNNING run)."""
    VerificationRun.objects.filter(pk=view.verification_run, state__in=[V.QUEUED, V.RUNNING]).update(
        state=V.ERRORED,
        finished_at=timezone.now(),
        error=f"{LOST} no result {view.verification_stale_s:.0f} s after it was {view.verification}; "
        "its worker was lost",
    )


def _restore(release: Release, decision: Decision, cause: str) -> bool:
    """Ask for the current release's missing replicas. Refused (no room yet, as after a rollback
    while the other release still holds its room), it says why once on the timeline and the beat
    asks again."""
    why = replicas.restore(release)
    if why:
        message = f"{decision.reason}; they cannot be loaded again yet: {why}"
        last = (
            release.events.filter(kind="note")
            .order_by("-at", "-id")
            .values_list("message", flat=True)
            .first()
        )
        if last != message[:500]:
            timeline.record(release, kind="note", cause=cause, message=message)
        return False
    timeline.record(release, kind="note", cause=cause, message=f"{decision.reason}: asked for them again")
    return True
