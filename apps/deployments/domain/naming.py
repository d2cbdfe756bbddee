"""What a deployment may be called: it names a serving endpoint and a live-update group."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a deployment, or None."""
    if not NAME_RE.match(name):
        return "1-63 lower-case letters, digits and '-', starting with a letter (e.g. 'chat-prod')."
    if name.endswith("-") or "--" in name:
        return "No '-' at the end and no '--': the name is part of URLs."
    return None
