"""Template filters every page uses."""

from __future__ import annotations

import json
from typing import Any

from django import template

from apps.core import sections as page_sections
from apps.core.domain import tones

register = template.Library()


@register.filter
def badge(value: str) -> str:
    """The badge class (ok/warn/bad, or none) its state machine declares for a state or status."""
    return tones.tone(value)


@register.filter
def pretty_json(value: Any) -> str:
    """A JSON value indented for reading; plain strings stay as they are."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@register.filter
def percent_of(part: int | None, whole: int | None) -> str:
    """`part` as a whole-number percentage of `whole`, or an empty string when unknown."""
    if part is None or not whole:
        return ""
    return f"{round(100 * part / whole)}%"


@register.inclusion_tag("core/_sections.html")
def sections(slot: str, obj: Any) -> dict[str, Any]:
    """The sections other apps show in `slot` for `obj` (apps.core.sections), each loaded by htmx."""
    return {"found": page_sections.for_slot(slot, obj), "slot": slot}
