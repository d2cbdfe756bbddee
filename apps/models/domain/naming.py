"""What a registered model's name, its tags and its aliases may look like.

Names appear in URLs, file paths and metric labels, so they are kept to a safe alphabet;
tags and alias names are lower-case so that "LLM" and "llm" are one tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

NAME_MAX = 100
TAG_MAX = 40
TAGS_MAX = 20
ALIAS_MAX = 40

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TAG = re.compile(r"[a-z0-9][a-z0-9._-]*")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a registered model, or None when it can."""
    if not name:
        return "A name is required."
    if len(name) > NAME_MAX:
        return f"At most {NAME_MAX} characters."
    if not _NAME.fullmatch(name):
        return (
            "Use letters, digits, '.', '_' and '-' only, starting with a letter or digit (e.g. llama-3.1-8b)."
        )
    return None


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags lower-cased, stripped, de-duplicated in order; ValueError names the first bad one."""
    cleaned: list[str] = []
    for raw in tags:
        tag = raw.strip().lower()
        if not tag or len(tag) > TAG_MAX or not _TAG.fullmatch(tag):
            raise ValueError(
                f"Tag {raw!r} is not valid: use 1-{TAG_MAX} lower-case letters, digits, '.', '_' or '-'."
            )
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > TAGS_MAX:
        raise ValueError(f"At most {TAGS_MAX} tags.")
    return cleaned


def alias_problem(name: str) -> str | None:
    """Why `name` cannot name an alias (production, staging, ...), or None when it can."""
    if not name or len(name) > ALIAS_MAX or not _TAG.fullmatch(name):
        return f"Use 1-{ALIAS_MAX} lower-case letters, digits, '.', '_' or '-' (e.g. production)."
    return None
