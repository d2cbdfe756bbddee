"""How MOC writes sizes for people: binary units, labelled as such, one way everywhere.

Pages (the `bytes` template filter), live figures (static/js/live.js mirrors this), refusals
and log lines all go through `format_bytes`, so one device never reads "11.8 GiB" in one place
and "24.0 GB" in another.
"""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(n: int) -> str:
    """Binary units with one decimal ("14.2 GiB", "512.0 MiB"); plain bytes below 1 KiB."""
    if abs(n) < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in _UNITS[:-1]:
        # Move up rather than print 1024.0 of a unit.
        if abs(round(value, 1)) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"
