"""The API's JSON parser: DRF's, refusing JSON nested deeper than MOC can store and show."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Far above any payload the API takes, and far below Python's recursion limit: JSON nested
# this deep would parse, then fail to encode (a JSONField saved, every later read a 500).
MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects in `value` nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list))
    return False


class JSONParser(parsers.JSONParser):
    """Deep nesting is a parse error (400), not a RecursionError in the decoder (500)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
            if not too_deep(data):
                return data
        except RecursionError:
            pass
        raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep.")
