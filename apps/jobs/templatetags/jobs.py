"""Template filters of the job pages."""

from __future__ import annotations

from django import template

from apps.jobs.domain.progress import eta_text

register = template.Library()


@register.filter
def eta(seconds: float | None) -> str:
    """A job's estimated time left, as the live pages word it (domain.progress.eta_text)."""
    return eta_text(seconds)
