"""Template filters for the registry's pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

from apps.models.domain.states import ValidationState

register = template.Library()

_VALIDATION_BADGE = {
    ValidationState.VALID: "ok",
    ValidationState.VALIDATING: "warn",
    ValidationState.INVALID: "bad",
}


@register.filter
def validation_badge(state: str) -> str:
    """The badge class (ok/warn/bad, or none) for a validation state."""
    return _VALIDATION_BADGE.get(state, "")


@register.filter
def as_json(value: Any) -> str:
    """A metadata value as readable JSON; plain strings stay as they are."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str)
