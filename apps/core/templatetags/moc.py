"""Template filters every page uses."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.timesince import timesince

from apps.core import sections as page_sections
from apps.core.domain import tones
from apps.core.domain.text import printable as printable_text
from apps.core.domain.units import format_bytes

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
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@register.filter
def percent_of(part: int | None, whole: int | None) -> str:
    """`part` as a whole-number percentage of `whole`, or an empty string when unknown."""
    if part is None or not whole:
        return ""
    return f"{round(100 * part / whole)}%"


@register.filter(name="bytes")
def bytes_filter(value: int | None) -> str:
    """A size in binary units labelled as such ("11.8 GiB"), kept on one line; empty when unknown."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        return ""
    return format_bytes(size).replace(" ", "\xa0")


# One time format on every page: 24-hour, date first (the live figures' clock in live.js agrees).
WHEN_FORMAT = "Y-m-d H:i:s"


@register.filter
def when(value: datetime | None) -> str:
    """A moment in the pages' one format, in the current time zone; empty when there is none."""
    if value is None:
        return ""
    return date_format(timezone.localtime(value) if timezone.is_aware(value) else value, WHEN_FORMAT)


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago, largest unit only ("5 minutes ago"), and "just now" under a minute."""
    if value is None:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value, depth=1)} ago"


@register.filter
def printable(value: Any) -> str:
    """Text with control characters (a newline in a file name) shown as visible escapes."""
    return printable_text(str(value))


@register.inclusion_tag("core/_sections.html")
def sections(slot: str, obj: Any) -> dict[str, Any]:
    """The sections other apps show in `slot` for `obj` (apps.core.sections), each loaded by htmx."""
    return {"found": page_sections.for_slot(slot, obj), "slot": slot}
