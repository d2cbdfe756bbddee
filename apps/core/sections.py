"""Sections an app shows on another app's page, fetched from its own URL.

A page of a lower app (a device's, a model version's) names a slot; an app above it registers a
section for that slot in its AppConfig.ready(). The page renders each registered section as a
placeholder that htmx fills from the registering app's URL as the page loads. So the lower app
imports nothing of the higher one, and the higher one keeps its HTML, reads and URLs to itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Section:
    slot: str
    title: str  # what the placeholder says while it loads
    url: Callable[[Any], str | None]  # the section's address for the page's object; None: not shown


_sections: dict[str, list[Section]] = {}


def register(slot: str, *, title: str, url: Callable[[Any], str | None]) -> None:
    """Show a section on every page that renders `slot` (called from an AppConfig.ready)."""
    known = _sections.setdefault(slot, [])
    if not any(s.title == title for s in known):
        known.append(Section(slot=slot, title=title, url=url))


def for_slot(slot: str, obj: Any) -> list[tuple[Section, str]]:
    """The sections `slot` shows for the page's object, with their addresses."""
    found = []
    for section in _sections.get(slot, []):
        url = section.url(obj)
        if url:
            found.append((section, url))
    return found
