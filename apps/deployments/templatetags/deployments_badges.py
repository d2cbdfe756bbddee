"""Template filters for the deployments pages: the badge class (ok/warn/bad, or none) of a state."""

from __future__ import annotations

from django import template

from apps.deployments.domain.checks import CheckStatus
from apps.deployments.domain.states import DeploymentState, ReleaseState, VerificationState

register = template.Library()

_BADGES = {
    DeploymentState.ACTIVE: "ok",
    DeploymentState.PAUSED: "warn",
    ReleaseState.VERIFYING: "warn",
    ReleaseState.ROLLING_OUT: "warn",
    ReleaseState.PROMOTED: "ok",
    ReleaseState.ROLLED_BACK: "bad",
    VerificationState.RUNNING: "warn",
    VerificationState.PASSED: "ok",
    VerificationState.ERRORED: "bad",
    CheckStatus.PASS: "ok",
    CheckStatus.WARN: "warn",
    CheckStatus.FAIL: "bad",
}


@register.filter
def state_badge(state: str) -> str:
    """`failed` is bad wherever it appears (releases, runs); the rest by the table above."""
    if state == "failed":
        return "bad"
    return _BADGES.get(state, "")
