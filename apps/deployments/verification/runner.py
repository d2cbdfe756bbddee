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
from django.db.models import Q
from django.utils import timezone

from apps.core import dispatch
from apps.deployments import events
from apps.deployments.domain.checks import CheckStatus
from apps.deployments.domain.states import VerificationState
from apps.deployments.models import CheckResult, Release, VerificationRun
from apps.deployments.verification.base import CheckSpec, Context, Outcome, context_for, one_line
from apps.deployments.verification.checks import CHECKS

# The tasks, by name (apps.deployments.tasks): the one that makes a run, and the rollout's tick
# that reads its verdict.
VERIFICATION_RUN = "apps.deployments.tasks.verification_run"
RELEASE_TICK = "apps.deployments.tasks.release_tick"
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
    dispatch.send_on_commit(VERIFICATION_RUN, args=[run.pk])
    return run


def run(*, run_id: int) -> VerificationRun:
    """Make run `run_id`: QUEUED → RUNNING (a second delivery finds it taken and does nothing), each
    check in order, then PASSED (no required check failed) or FAILED, and the release's tick."""
    now = timezone.now()
    claimed = (
        VerificationRun.objects.filter(pk=run_id)
        .filter(Q(state=V.QUEUED) | Q(state=V.RUNNING, started_at__lt=now - STALE_AFTER))
        .update(state=V.RUNNING, started_at=now, finished_at=None, error="")
    )
    verification = VerificationRun.objects.select_related("release__deployment").get(pk=run_id)
    if not claimed:
        return verification
    CheckResult.objects.filter(run=verification).delete()  # a stale run's, taken over
    _publish(verification, {"state": V.RUNNING.value})
    try:
        ctx = context_for(verification.release)
    except Exception as exc:
        return _finish(verification, V.ERRORED, error=one_line(f"{type(exc).__name__}: {exc}", 2000))
    required = set(ctx.deployment.required_checks or [])
    failed: list[str] = []
    for check in CHECKS:
        outcome, duration_ms = run_check(check, ctx)
        result = CheckResult.objects.create(
            run=verification,
            name=check.NAME,
            status=outcome.status,
            required=check.NAME in required,
            duration_ms=duration_ms,
            reason=one_line(outcome.reason),
            evidence=_json_safe(outcome.evidence),
        )
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
    return _finish(verification, V.FAILED if failed else V.PASSED)


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
def _finish(verification: VerificationRun, state: VerificationState, *, error: str = "") -> VerificationRun:
    VerificationRun.objects.filter(pk=verification.pk, state=V.RUNNING).update(
        state=state, finished_at=timezone.now(), error=error
    )
    verification.refresh_from_db()
    _publish(verification, {"state": verification.state, **({"error": error} if error else {})})
    dispatch.send_on_commit(RELEASE_TICK, args=[verification.release_id])
    return verification


def _publish(verification: VerificationRun, payload: dict[str, Any]) -> None:
    events.check_finished(
        deployment_name=verification.release.deployment.name,
        payload={"run": verification.pk, "release": verification.release_id, **payload},
    )
