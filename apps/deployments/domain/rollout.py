"""What a release does next: the rollout's rules, as one pure decision (no Django, time passed in).

apps.deployments.rollout reads a release into a View, asks decide() and applies the Decision, then
asks again until the answer is WAIT. Each decision is one small move, so every move is a row of
the release's timeline and a tick that dies halfway leaves a state the next tick continues from.

The flows:
- recreate: check the previous release could be loaded again (else fail before touching it),
  unload it, load the new, verify, all traffic, promote;
- blue-green: load green beside blue, verify, all traffic at once (promote), keep blue loaded for
  blue_green_keep_s (an instant rollback), then unload it;
- canary: load beside stable, verify, then each step: its share of traffic for step_pause_s, then
  the step's analysis decides. A failed analysis aborts at once, even mid-pause, and even while
  a person holds the release paused with its share. Inconclusive waits for samples up to
  step_timeout_s past the pause, then pauses for a person (or rolls back, as the deployment
  says); automation never promotes on inconclusive. The last step (100) is the promotion itself:
  no stable traffic is left to compare with.

A release whose deployment is paused or retired is held where it is. The current release of a
live, pinned deployment with no release under way gets its missing replicas back (after a rollback
to a release whose replicas were unloaded, or a lost node). An unpinned deployment's current
release is on demand: its idle replicas go after the keep-alive and a request brings them back
(apps.deployments.wake), never the engine.

An ended release's replicas go once its abort grace is over. A promoted release that was rolled
back answers traffic in the current release's place (traffic's fallback) until the current one has
a replica loaded, so past its grace it stays while one is on its way (serving's unload then drains
its requests). Only while one is on its way: a current release refused the room the rolled-back
one holds would otherwise wait for it for good.

Every reason that ends, pauses or fails a release says what the operator can do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from apps.deployments.domain.analysis import Analysis, Outcome
from apps.deployments.domain.states import (
    RELEASE_MOVING,
    DeploymentState,
    OnInconclusive,
    ReleaseState,
    VerificationState,
)
from apps.deployments.domain.strategy import Strategy

R, V = ReleaseState, VerificationState
# Ended releases: what they still hold is unloaded once their grace is over.
ENDED = frozenset({R.ABORTED.value, R.ROLLED_BACK.value, R.FAILED.value, R.CANCELLED.value})
# Deployments whose releases move: a paused or retired one holds them where they are.
LIVE = frozenset({DeploymentState.DRAFT.value, DeploymentState.ACTIVE.value})
# Release.reason's length: a reason is shortened in its middle to fit, never its advice.
REASON_MAX = 300


class Act(StrEnum):
    WAIT = "wait"  # nothing to do until something changes (a load, a run, time)
    START = "start"  # pending -> loading
    UNLOAD_PREVIOUS = "unload_previous"  # recreate before loading; after promotion once kept long enough
    LOAD = "load"  # ask for `count` more replicas
    VERIFY = "verify"  # -> verifying, and ask for a verification run
    REVERIFY = "reverify"  # the run lost its worker: mark it so, ask for another
    PROGRESS = "progress"  # verified: -> progressing
    SET_STEP = "set_step"  # canary: step `step_index`, `traffic` percent, a new analysis window
    PROMOTE = "promote"
    ABORT = "abort"
    ROLL_BACK = "roll_back"
    PAUSE = "pause"
    FAIL = "fail"
    UNLOAD_OWN = "unload_own"  # an ended release's replicas, once its grace is over
    RESTORE = "restore"  # the current release is short of replicas: ask for `count` again


@dataclass(frozen=True, slots=True)
class Decision:
    act: Act
    reason: str = ""
    count: int = 0  # LOAD, RESTORE
    step_index: int = 0  # SET_STEP
    traffic: int = 0  # SET_STEP


@dataclass(frozen=True, slots=True)
class View:
    """A release as the rules see it. Times are epoch seconds."""

    strategy: str
    state: str
    now: float
    deployment_live: bool = True  # its deployment is draft or active (not paused, not retired)
    steps: tuple[int, ...] = ()
    step_index: int = 0
    step_started_at: float | None = None
    traffic_percent: int = 0
    has_previous: bool = False
    # The previous release's replicas this release may take off: still serving (asked for, loading,
    # loaded), and on their way out (unloading).
    previous_serving: int = 0
    previous_leaving: int = 0
    previous_kept_until: float | None = None
    # Why the previous release could not be loaded again ("" when it could): recreate asks before
    # unloading it.
    previous_unloadable: str = ""
    replicas_wanted: int = 1
    replicas_active: int = 0  # asked for, loading or loaded
    replicas_loaded: int = 0
    replica_error: str = ""  # why one of its replicas failed or was lost
    verification: str | None = None  # the latest run's state; None when none was asked for
    verification_reason: str = ""
    verification_run: int | None = None  # the latest run's id
    # When the latest run was queued (QUEUED) or started (RUNNING), and how long it may take
    # before it counts as lost with its worker; how many runs just before it were lost so (since
    # the latest run that was not: each lost run after one that ended gets its one retry).
    verification_since: float | None = None
    verification_stale_s: float = 3600
    verification_lost_before: int = 0
    rollback_failed: str = ""  # the failed required rollback check's reason, in the latest run
    analysis: Analysis | None = None  # the current step's, over its window
    step_pause_s: float = 60
    step_timeout_s: float = 300
    on_inconclusive: str = OnInconclusive.PAUSE.value
    # Ended releases: when it ended, how long its replicas stay, how many it still holds.
    finished_at: float | None = None
    abort_grace_s: float = 30
    own_serving: int = 0
    # A promoted release rolled back to the current one, which answers in its place (traffic's
    # fallback) while the current has a replica on its way but none loaded.
    fallback_waiting: bool = False
    # Promoted releases: it is its deployment's current release; another release is under way;
    # why its own version could not be loaded ("" when it could).
    current: bool = False
    others_open: bool = False
    on_demand: bool = False  # current, of a deployment that is not pinned: never restored here
    unloadable: str = ""


WAIT = Decision(Act.WAIT)


def reason(head: str, why: str, then: str) -> str:
    """ "head: why. then", with `why` shortened to fit Release.reason so that what to do next
    (`then`) is never cut off."""
    why = why.strip().rstrip(".")
    room = REASON_MAX - len(head) - len(then) - 4
    if len(why) > room:
        why = why[: max(0, room - 1)].rstrip() + "…"
    return f"{head}: {why}. {then}" if why else f"{head}. {then}"


def decide(view: View) -> Decision:
    """The next move of the release in `view`."""
    if view.state in RELEASE_MOVING and not view.deployment_live:
        return WAIT  # held while its deployment is paused or retired
    if view.state == R.PENDING:
        return Decision(Act.START)
    if view.state == R.LOADING:
        return _loading(view)
    if view.state == R.VERIFYING:
        return _verifying(view)
    if view.state == R.PROGRESSING:
        return _progressing(view)
    if view.state == R.PAUSED:
        return _paused(view)
    if view.state == R.PROMOTED:
        return _promoted(view)
    if view.state in ENDED and view.own_serving:
        if view.fallback_waiting:
            return WAIT  # unloading it now would leave traffic nothing loaded to answer
        due = (view.finished_at or view.now) + view.abort_grace_s
        if view.now >= due:
            return Decision(Act.UNLOAD_OWN, reason=f"the release {view.state.replace('_', ' ')}")
    return WAIT  # ended, with nothing left to unload or its grace still running


def load_failed(view: View, head: str, why: str, then: str) -> Decision:
    """A release that cannot be placed or loaded: recreate already unloaded the previous release,
    so it goes back to it (rolled back); otherwise traffic never moved and it simply failed."""
    act = Act.ROLL_BACK if view.strategy == Strategy.RECREATE and view.has_previous else Act.FAIL
    return Decision(act, reason=reason(head, why, then))


def _replica_failed(view: View) -> Decision:
    return load_failed(
        view, "a replica failed", view.replica_error, "Fix what its error names, then release again"
    )


def _loading(view: View) -> Decision:
    if view.replica_error:
        return _replica_failed(view)
    if view.strategy == Strategy.RECREATE:
        if view.previous_serving:
            if view.previous_unloadable:
                return Decision(
                    Act.FAIL,
                    reason=reason(
                        "recreate would unload the previous release, which could not be loaded again",
                        view.previous_unloadable,
                        "Nothing was unloaded. Make its version loadable again, or release with canary or "
                        "blue-green, which keep it loaded",
                    ),
                )
            return Decision(Act.UNLOAD_PREVIOUS, reason="recreate: the previous release goes first")
        if view.previous_leaving:
            return WAIT
    if view.replicas_active < view.replicas_wanted:
        return Decision(Act.LOAD, count=view.replicas_wanted - view.replicas_active)
    if view.replicas_loaded >= view.replicas_wanted:
        return Decision(Act.VERIFY)
    return WAIT


def _verifying(view: View) -> Decision:
    if view.replica_error:
        return _replica_failed(view)
    if view.verification is None:
        return Decision(Act.VERIFY)
    if view.verification == V.PASSED:
        return Decision(Act.PROGRESS, reason="verification passed")
    if view.verification in (V.FAILED, V.ERRORED):
        head = f"verification {view.verification}"
        if view.rollback_failed:
            # Rolling back would go to the release the check just judged unloadable: hold it.
            return Decision(
                Act.PAUSE,
                reason=reason(
                    head,
                    view.verification_reason,
                    "Paused, not rolled back: the previous release could not be loaded again. Make its "
                    "version loadable and resume to verify again, drop rollback from the deployment's "
                    "required checks and resume, or abort",
                ),
            )
        return Decision(
            Act.ROLL_BACK if view.has_previous else Act.FAIL,
            reason=reason(
                head,
                view.verification_reason,
                "Fix what the failed checks name and release again, or make a check optional in the "
                "deployment's required checks",
            ),
        )
    if run_lost(view):
        lost = (
            f"verification run #{view.verification_run} was {view.verification} for "
            f"{view.now - (view.verification_since or view.now):.0f} s with no result: its worker was lost"
        )
        if not view.verification_lost_before:
            return Decision(Act.REVERIFY, reason=f"{lost}; asking for another run")
        return Decision(
            Act.ROLL_BACK if view.has_previous else Act.FAIL,
            reason=reason(
                lost,
                "a run before it was lost too",
                "Check that a worker takes the default queue and is not stuck, then release again",
            ),
        )
    return WAIT


def run_lost(view: View) -> bool:
    """The latest verification run is still queued or running past its bound: its worker is gone."""
    since = view.verification_since
    return (
        view.verification in (V.QUEUED, V.RUNNING)
        and since is not None
        and view.now >= since + view.verification_stale_s
    )


def _progressing(view: View) -> Decision:
    if view.strategy != Strategy.CANARY:
        return Decision(Act.PROMOTE, reason=f"{view.strategy.replace('_', '-')}: verified, all traffic")
    if not view.has_previous:
        return Decision(Act.PROMOTE, reason="canary: no stable release to compare with, all traffic")
    if view.step_index >= len(view.steps) or view.steps[view.step_index] >= 100:
        return Decision(Act.PROMOTE, reason="canary: the last step is all traffic")
    target = view.steps[view.step_index]
    if view.step_started_at is None or view.traffic_percent != target:
        return Decision(Act.SET_STEP, step_index=view.step_index, traffic=target)
    analysis = view.analysis
    if analysis is not None and analysis.outcome == Outcome.FAILED:
        return _analysis_failed(f"analysis failed at {target}%", analysis)
    elapsed = view.now - view.step_started_at
    if elapsed < view.step_pause_s:
        return WAIT
    if analysis is not None and analysis.outcome == Outcome.SUCCESSFUL:
        following = view.step_index + 1
        if following >= len(view.steps) or view.steps[following] >= 100:
            return Decision(Act.PROMOTE, reason=f"analysis successful at {target}%, the last step")
        return Decision(
            Act.SET_STEP,
            step_index=following,
            traffic=view.steps[following],
            reason=f"analysis successful at {target}%",
        )
    if view.now < view.step_started_at + view.step_pause_s + view.step_timeout_s:
        return WAIT
    head = f"analysis inconclusive at {target}% after {view.step_pause_s + view.step_timeout_s:.0f} s"
    why = analysis.reason if analysis is not None else "no figures"
    if view.on_inconclusive == OnInconclusive.ROLLBACK:
        return Decision(
            Act.ROLL_BACK,
            reason=reason(
                head,
                why,
                "Rolled back, as the deployment asks. Send it more traffic or lower its minimum samples, "
                "then release again",
            ),
        )
    return Decision(Act.PAUSE, reason=reason(head, why, "Resume to retry the step, promote, or abort"))


def _paused(view: View) -> Decision:
    """Paused, a canary that still takes its share is judged on: a failed analysis aborts it."""
    analysis = view.analysis
    if view.traffic_percent and analysis is not None and analysis.outcome == Outcome.FAILED:
        return _analysis_failed(f"analysis failed at {view.traffic_percent}% while paused", analysis)
    return WAIT


def _analysis_failed(head: str, analysis: Analysis) -> Decision:
    return Decision(
        Act.ABORT,
        reason=reason(
            head, analysis.reason, "Traffic is back on stable; fix the version and release it again"
        ),
    )


def _promoted(view: View) -> Decision:
    if view.previous_serving and view.previous_kept_until is not None:
        if view.now >= view.previous_kept_until:
            return Decision(Act.UNLOAD_PREVIOUS, reason="the previous release's keep window is over")
        return WAIT
    missing = view.replicas_wanted - view.replicas_active
    # An unloadable version waits for a person to make it loadable (the rollback said so).
    if (
        view.current
        and not view.on_demand
        and view.deployment_live
        and not view.others_open
        and missing > 0
        and not view.unloadable
    ):
        return Decision(
            Act.RESTORE,
            count=missing,
            reason=f"it is the deployment's current release and {missing} of its replicas are missing",
        )
    return WAIT
