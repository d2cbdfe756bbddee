"""A verification run: ask for one (a QUEUED row, its task sent on commit), and make it (the checks
in order, each bounded by its timeout, a row and a live event as each finishes, then the verdict
and a tick of the release's rollout)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from types import ModuleType
from typing import Any

from django.db import connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.core import dispatch
from apps.core.transitions import transitioned
from apps.deployments import events, messages
from apps.deployments.domain.checks import CheckStatus
from apps.deployments.domain.states import VerificationState
from apps.deployments.models import CheckResult, Release, VerificationRun
from apps.deployments.verification.base import CheckSpec, Context, Outcome, context_for, one_line
from apps.deployments.verification.checks import CHECKS

V = VerificationState
# A run RUNNING longer than every check's timeout together (and a margin) lost its worker: a
# delivery of its task may take it over and start it again.
STALE_AFTER = dt.timedelta(seconds=sum(c.TIMEOUT_S for c in CHECKS) + 60)


def suite() -> list[CheckSpec]:
    """Every check, in the order a run makes them."""
    return [CheckSpec(c.NAME.value, c.DESCRIPTION, c.TIMEOUT_S) for c in CHECKS]


@transaction.atomic
def verification_request(*, release: Release) -> VerificationRun:
    """A QUEUED run of the suite over `release`; a worker makes it once this transaction commits."""
    run = VerificationRun.objects.create(release=release)
    dispatch.send_on_commit(messages.VERIFICATION_RUN, args=[run.pk])
    return run


def run(*, run_id: int) -> VerificationRun:
    """Make run `run_id`: QUEUED → RUNNING (a second delivery finds it taken and does nothing), each
    check in order, then PASSED (no required check failed) or FAILED, and the release's tick.

    A run RUNNING past STALE_AFTER lost its worker, and a delivery of its task takes it over and
    starts again. Its claim is the new started_at: every write of a run (a result, the verdict) is
    made only while the run is still RUNNING under the claim that made it, so a first worker that
    was only slow, not gone, stops at its next write instead of mixing its results in."""
    claim = timezone.now()
    with transaction.atomic():
        claimed = (
            VerificationRun.objects.filter(pk=run_id)
            .filter(Q(state=V.QUEUED) | Q(state=V.RUNNING, started_at__lt=claim - STALE_AFTER))
            .update(state=V.RUNNING, started_at=claim, finished_at=None, error="")
        )
        if claimed:
            CheckResult.objects.filter(run_id=run_id).delete()  # a stale run's, taken over
    verification = VerificationRun.objects.select_related("release__deployment").get(pk=run_id)
    if not claimed:
        return verification
    _publish(verification, {"state": V.RUNNING.value})
    try:
        ctx = context_for(verification.release)
    except Exception as exc:
        error = one_line(f"{type(exc).__name__}: {exc}", 2000)
        return _finish(verification, claim, V.ERRORED, error=error)
    required = set(ctx.deployment.required_checks or [])
    failed: list[str] = []
    for check in CHECKS:
        outcome, duration_ms = run_check(check, ctx)
        result = _store(
            verification,
            claim,
            name=check.NAME,
            status=outcome.status,
            required=check.NAME in required,
            duration_ms=duration_ms,
            reason=one_line(outcome.reason),
            evidence=_json_safe(outcome.evidence),
        )
        if result is None:  # taken over: the run is another delivery's now
            verification.refresh_from_db()
            return verification
        _publish(
            verification,
            {
                "check": result.name,
                "status": result.status,
                "required": result.required,
                "duration_ms": result.duration_ms,
                "reason": result.reason,
            },
        )
        if result.status == CheckStatus.FAIL and result.required:
            failed.append(result.name)
    return _finish(verification, claim, V.FAILED if failed else V.PASSED)


def _ours(verification: VerificationRun, claim: dt.datetime) -> QuerySet[VerificationRun]:
    """The run's row while it is still RUNNING under `claim` (empty once another delivery took it
    over or it was ended), locked where the database locks rows; SQLite's IMMEDIATE transactions
    already serialize every writer."""
    return VerificationRun.objects.select_for_update().filter(
        pk=verification.pk, state=V.RUNNING, started_at=claim
    )


@transaction.atomic
def _store(verification: VerificationRun, claim: dt.datetime, **fields: Any) -> CheckResult | None:
    """A check's result, stored only while the run is still this claim's; None when it is not."""
    if not _ours(verification, claim).exists():
        return None
    return CheckResult.objects.create(run=verification, **fields)


def run_check(check: ModuleType, ctx: Context) -> tuple[Outcome, int]:
    """The check's outcome and how long it took (ms). It runs in a thread of its own, so one that
    overruns its TIMEOUT_S is a fail while the run goes on (the thread is left to end by itself:
    each check bounds its own waits); one that raises is a fail with the exception's reason."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["outcome"] = check.run(ctx)
        except Exception as exc:
            box["error"] = exc
        finally:
            connections.close_all()  # this thread's own connections

    began = time.monotonic()
    thread = threading.Thread(target=target, name=f"verification-{check.NAME}", daemon=True)
    thread.start()
    thread.join(check.TIMEOUT_S)
    duration_ms = round((time.monotonic() - began) * 1000)
    if thread.is_alive():
        return Outcome(CheckStatus.FAIL, f"timed out after {check.TIMEOUT_S:g} s"), duration_ms
    if "error" in box:
        name = type(box["error"]).__name__
        raised = Outcome(CheckStatus.FAIL, one_line(f"{name}: {box['error']}"), {"exception": name})
        return raised, duration_ms
    return box["outcome"], duration_ms


def _json_safe(evidence: dict[str, Any]) -> dict[str, Any]:
    """The evidence as JSON stores it; anything JSON cannot hold becomes its string."""
    return json.loads(json.dumps(evidence, default=str))


@transaction.atomic
def _finish(
    verification: VerificationRun, claim: dt.datetime, state: VerificationState, *, error: str = ""
) -> VerificationRun:
    """The verdict, then the release's tick; nothing when the run is no longer this claim's (its
    new owner gives the verdict)."""
    ended = _ours(verification, claim).update(state=state, finished_at=timezone.now(), error=error)
    verification.refresh_from_db()
    if ended:
        # A conditional UPDATE sends no post_save: listeners (alerts' verification_failed) hear it here.
        transitioned.send(sender=VerificationRun, instance=verification)
        _publish(verification, {"state": verification.state, **({"error": error} if error else {})})
        dispatch.send_on_commit(messages.RELEASE_TICK, args=[verification.release_id])
    return verification


def _publish(verification: VerificationRun, payload: dict[str, Any]) -> None:
    events.check_finished(
        deployment_name=verification.release.deployment.name,
        payload={"run": verification.pk, "release": verification.release_id, **payload},
    )
