"""What a release does next: the rollout's rules, as one pure decision (no Django, time passed in).

apps.deployments.rollout reads a release into a View, asks decide() and applies the Decision, then
asks again until the answer is WAIT. Each decision is one small move, so every move is a row of
the release's timeline and a tick that dies halfway leaves a state the next tick continues from.

The flows:
- recreate: unload the previous release, load the new, verify, all traffic, promote;
- blue-green: load green beside blue, verify, all traffic at once (promote), keep blue loaded for
  blue_green_keep_s (an instant rollback), then unload it;
- canary: load beside stable, verify, then each step: its share of traffic for step_pause_s, then
  the step's analysis decides. A failed analysis aborts at once, even mid-pause. Inconclusive waits
  for samples up to step_timeout_s past the pause, then pauses for a person (or rolls back, as the
  deployment says); automation never promotes on inconclusive. The last step (100) is the
  promotion itself: no stable traffic is left to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from apps.deployments.domain.analysis import Analysis, Outcome
from apps.deployments.domain.states import OnInconclusive, ReleaseState, VerificationState
from apps.deployments.domain.strategy import Strategy

R = ReleaseState
# Ended releases: what they still hold is unloaded once their grace is over.
ENDED = frozenset({R.ABORTED.value, R.ROLLED_BACK.value, R.FAILED.value, R.CANCELLED.value})


class Act(StrEnum):
    WAIT = "wait"  # nothing to do until something changes (a load, a run, time)
    START = "start"  # pending -> loading
    UNLOAD_PREVIOUS = "unload_previous"  # recreate before loading; after promotion once kept long enough
    LOAD = "load"  # ask for `count` more replicas
    VERIFY = "verify"  # -> verifying, and ask for a verification run
    PROGRESS = "progress"  # verified: -> progressing
    SET_STEP = "set_step"  # canary: step `step_index`, `traffic` percent, a new analysis window
    PROMOTE = "promote"
    ABORT = "abort"
    ROLL_BACK = "roll_back"
    PAUSE = "pause"
    FAIL = "fail"
    UNLOAD_OWN = "unload_own"  # an ended release's replicas, once its grace is over


@dataclass(frozen=True, slots=True)
class Decision:
    act: Act
    reason: str = ""
    count: int = 0  # LOAD
    step_index: int = 0  # SET_STEP
    traffic: int = 0  # SET_STEP
    until: float | None = None  # WAIT: when time alone may change the answer


@dataclass(frozen=True, slots=True)
class View:
    """A release as the rules see it. Times are epoch seconds."""

    strategy: str
    state: str
    now: float
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
    replicas_wanted: int = 1
    replicas_active: int = 0  # asked for, loading or loaded
    replicas_loaded: int = 0
    replica_error: str = ""  # why one of its replicas failed or was lost
    verification: str | None = None  # the latest run's state; None when none was asked for
    verification_reason: str = ""
    analysis: Analysis | None = None  # the current step's, over its window
    step_pause_s: float = 60
    step_timeout_s: float = 300
    on_inconclusive: str = OnInconclusive.PAUSE.value
    # Ended releases: when it ended, how long its replicas stay, how many it still holds.
    finished_at: float | None = None
    abort_grace_s: float = 30
    own_serving: int = 0


WAIT = Decision(Act.WAIT)


def decide(view: View) -> Decision:
    """The next move of the release in `view`."""
    if view.state == R.PENDING:
        return Decision(Act.START)
    if view.state == R.LOADING:
        return _loading(view)
    if view.state == R.VERIFYING:
        return _verifying(view)
    if view.state == R.PROGRESSING:
        return _progressing(view)
    if view.state == R.PROMOTED:
        if view.previous_serving and view.previous_kept_until is not None:
            if view.now >= view.previous_kept_until:
                return Decision(Act.UNLOAD_PREVIOUS, reason="the previous release's keep window is over")
            return Decision(Act.WAIT, until=view.previous_kept_until)
        return WAIT
    if view.state in ENDED and view.own_serving:
        due = (view.finished_at or view.now) + view.abort_grace_s
        if view.now >= due:
            return Decision(Act.UNLOAD_OWN, reason=f"the release {view.state.replace('_', ' ')}")
        return Decision(Act.WAIT, until=due)
    return WAIT  # paused (a person resumes it), or ended with nothing left to unload


def load_failed(view: View, why: str) -> Decision:
    """A release that cannot be placed or loaded: recreate already unloaded the previous release,
    so it goes back to it (rolled back); otherwise traffic never moved and it simply failed."""
    if view.strategy == Strategy.RECREATE and view.has_previous:
        return Decision(Act.ROLL_BACK, reason=why)
    return Decision(Act.FAIL, reason=why)


def _loading(view: View) -> Decision:
    if view.replica_error:
        return load_failed(view, f"a replica failed: {view.replica_error}")
    if view.strategy == Strategy.RECREATE:
        if view.previous_serving:
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
        return load_failed(view, f"a replica failed: {view.replica_error}")
    if view.verification is None:
        return Decision(Act.VERIFY)
    if view.verification == VerificationState.PASSED:
        return Decision(Act.PROGRESS, reason="verification passed")
    if view.verification in (VerificationState.FAILED, VerificationState.ERRORED):
        why = f"verification {view.verification}" + (
            f": {view.verification_reason}" if view.verification_reason else ""
        )
        return Decision(Act.ROLL_BACK if view.has_previous else Act.FAIL, reason=why)
    return WAIT


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
        return Decision(Act.ABORT, reason=f"analysis failed at {target}%: {analysis.reason}")
    elapsed = view.now - view.step_started_at
    if elapsed < view.step_pause_s:
        return Decision(Act.WAIT, until=view.step_started_at + view.step_pause_s)
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
    deadline = view.step_started_at + view.step_pause_s + view.step_timeout_s
    if view.now < deadline:
        return Decision(Act.WAIT, until=deadline)
    why = f"analysis inconclusive at {target}% after {view.step_pause_s + view.step_timeout_s:.0f} s" + (
        f": {analysis.reason}" if analysis is not None else ": no figures"
    )
    if view.on_inconclusive == OnInconclusive.ROLLBACK:
        return Decision(Act.ROLL_BACK, reason=why)
    return Decision(Act.PAUSE, reason=why)
