"""What operators do to a release: promote, pause, resume, abort, roll back.

Each locks the release's row, checks the state machine against the state it finds, makes the
move (timeline entry with cause operator, audited) and asks the engine to carry on. Two actions
racing on one release take turns on the lock: the second finds the state the first left and is
refused with a Conflict (409) that names who or what moved it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core import audit, dispatch
from apps.core.domain.errors import Conflict
from apps.deployments import messages, verification
from apps.deployments.domain.states import RELEASE, RELEASE_OPEN, ReleaseState, VerificationState
from apps.deployments.models import Release, ReleaseEvent
from apps.deployments.rollout import moves, timeline
from apps.deployments.rollout.engine import locked

R, V = ReleaseState, VerificationState
Cause = ReleaseEvent.Cause
# What to do instead of an action the release's state forbids, by state.
INSTEAD = {
    R.PENDING: "cancel it instead",
    R.PROMOTED: "roll it back instead",
}


def _who(user: Any) -> str:
    return user.get_username() if user is not None and getattr(user, "is_authenticated", False) else "someone"


def _refuse(current: Release, seen: Release, verb: str, why: str = "") -> Conflict:
    """A Conflict saying why `verb` cannot happen; when the state changed since the caller read
    it, who or what changed it."""
    label = current.get_state_display().lower()
    if current.state != seen.state:
        last = (
            current.events.filter(to_state=current.state)
            .select_related("actor")
            .order_by("-at", "-id")
            .first()
        )
        by = ""
        if last is not None:
            by = (
                f" by {last.actor.get_username()}"
                if last.actor
                else f" by the {last.get_cause_display().lower()}"
            )
            by += f" at {last.at:%H:%M:%S}" + (f" ({last.message})" if last.message else "")
        return Conflict(f"Release #{current.pk} was {label}{by} meanwhile; it cannot be {verb} now.")
    return Conflict(f"Release #{current.pk} is {label}; it cannot be {verb}" + (f": {why}." if why else "."))


def _lock(release: Release) -> Release:
    current = locked(release.pk)
    if current is None:
        raise Conflict(f"Release #{release.pk} no longer exists.")
    return current


def _done(current: Release, action: str, old: str) -> Release:
    audit.record(action, current, changes={"state": [old, current.state]})
    dispatch.send_on_commit(messages.RELEASE_TICK, args=[current.pk])
    return current


@transaction.atomic
def release_promote(*, release: Release, by: Any, reason: str = "") -> Release:
    """All traffic to it now, skipping the steps left. Only once it is verified."""
    current = _lock(release)
    old = current.state
    unverified = current.state == R.PAUSED and current.resume_to in (R.LOADING, R.VERIFYING)
    if not RELEASE.can(old, R.PROMOTED) or unverified:
        raise _refuse(
            current,
            release,
            "promoted",
            "it has not passed verification yet; resume it to verify, or abort it" if unverified else "",
        )
    moves.promote(
        current,
        now=timezone.now(),
        cause=Cause.OPERATOR,
        actor=by,
        reason=reason or f"promoted by {_who(by)}" + (", skipping the steps left" if current.steps else ""),
    )
    return _done(current, "promote", old)


@transaction.atomic
def release_pause(*, release: Release, by: Any, reason: str = "") -> Release:
    """Hold it where it is, traffic share included, until resumed."""
    current = _lock(release)
    old = current.state
    if old == R.PENDING or not RELEASE.can(old, R.PAUSED):
        raise _refuse(current, release, "paused", INSTEAD.get(R(old), ""))
    moves.pause(current, cause=Cause.OPERATOR, actor=by, reason=reason or f"paused by {_who(by)}")
    return _done(current, "pause", old)


@transaction.atomic
def release_resume(*, release: Release, by: Any, reason: str = "") -> Release:
    """Carry on from where it was paused; a canary step's window starts again (a new baseline), and
    a release paused after its verification failed is verified again (a new run)."""
    current = _lock(release)
    old = current.state
    if old != R.PAUSED:
        raise _refuse(current, release, "resumed", "only a paused release resumes")
    now = timezone.now()
    moves.move(
        current,
        R(current.resume_to or R.PROGRESSING),
        cause=Cause.OPERATOR,
        actor=by,
        message=reason or f"resumed by {_who(by)}",
        resume_to="",
        reason="",
        step_started_at=now if current.step_started_at else None,
        analysis_baseline=moves.baseline(current, now),
    )
    if current.state == R.VERIFYING:
        latest = current.verification_runs.order_by("-created_at", "-id").first()
        if latest is not None and latest.state in (V.FAILED, V.ERRORED):
            run = verification.verification_request(release=current)
            timeline.record(
                current,
                kind="verification",
                cause=Cause.OPERATOR,
                actor=by,
                message=f"verification run #{run.pk} asked for",
            )
    return _done(current, "resume", old)


@transaction.atomic
def release_abort(*, release: Release, by: Any, reason: str = "") -> Release:
    """Stop it: traffic back to stable at once; its replicas go after the abort grace."""
    current = _lock(release)
    old = current.state
    if not RELEASE.can(old, R.ABORTED):
        raise _refuse(current, release, "aborted", INSTEAD.get(R(old), ""))
    moves.end(
        current,
        R.ABORTED,
        now=timezone.now(),
        cause=Cause.OPERATOR,
        actor=by,
        reason=reason or f"aborted by {_who(by)}",
    )
    return _done(current, "abort", old)


@transaction.atomic
def release_rollback(*, release: Release, by: Any, reason: str = "") -> Release:
    """Traffic back to the release before it, at once (current again if this one was promoted)."""
    current = _lock(release)
    old = current.state
    if not RELEASE.can(old, R.ROLLED_BACK):
        raise _refuse(current, release, "rolled back")
    if current.previous_release_id is None:
        raise _refuse(
            current, release, "rolled back", "there is no previous release to return to (abort it instead)"
        )
    if old == R.PROMOTED and current.deployment.current_release_id != current.pk:
        raise _refuse(
            current, release, "rolled back", "a later release has replaced it; roll back that one instead"
        )
    under_way = current.deployment.releases.filter(state__in=RELEASE_OPEN).exclude(pk=current.pk).first()
    if old == R.PROMOTED and under_way is not None:
        # Its previous_release and analysis would still point at this one.
        raise _refuse(
            current,
            release,
            "rolled back",
            f"release #{under_way.pk} is {under_way.get_state_display().lower()}; "
            + ("cancel" if under_way.state == R.PENDING else "abort")
            + " it first",
        )
    moves.end(
        current,
        R.ROLLED_BACK,
        now=timezone.now(),
        cause=Cause.OPERATOR,
        actor=by,
        reason=reason or f"rolled back by {_who(by)} to release #{current.previous_release_id}",
    )
    return _done(current, "rollback", old)
