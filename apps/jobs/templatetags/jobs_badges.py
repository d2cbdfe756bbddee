"""Template filters for the jobs pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

from apps.jobs.domain.kinds import LogLevel
from apps.jobs.domain.states import JobState

register = template.Library()

_STATE_BADGE = {
    JobState.RUNNING: "warn",
    JobState.CANCELLING: "warn",
    JobState.SUCCEEDED: "ok",
    JobState.FAILED: "bad",
}
_LEVEL_BADGE = {LogLevel.WARNING: "warn", LogLevel.ERROR: "bad"}


@register.filter
def job_badge(state: str) -> str:
    """The badge class (ok/warn/bad, or none) for a job state."""
    return _STATE_BADGE.get(state, "")


@register.filter
def level_badge(level: str) -> str:
    return _LEVEL_BADGE.get(level, "")


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
