"""How a running job's progress reads to people: the time it has left."""

from __future__ import annotations


def eta_text(seconds: float | None) -> str:
    """Seconds left as "2 h 05 min", "4 min 10 s", "12 s"; "" while unknown."""
    if seconds is None or seconds < 0:
        return ""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
