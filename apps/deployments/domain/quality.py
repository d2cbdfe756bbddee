"""Output quality: does a model's answer to a golden-set prompt match what was expected (pure Python).

A deployment's golden set is a list of items {"prompt", "expected", "match", "tolerance"}:
- exact: the output, less surrounding whitespace, equals `expected` (less its own);
- contains: `expected` occurs in the output, as written;
- similarity: difflib's SequenceMatcher ratio (2·matches / total length, 0..1) between the two,
  each case-folded and with runs of whitespace made one space, is at least `tolerance`.

difflib's ratio is a character-level edit similarity: cheap, in the standard library, and good
for "nearly the same words"; it knows nothing of meaning (an embedding distance would, at the
price of a second model), which a later issue may add as another match.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Match(StrEnum):
    EXACT = "exact"
    CONTAINS = "contains"
    SIMILARITY = "similarity"


DEFAULT_TOLERANCE = 0.8
# Tokens a golden-set prompt generates unless its item says otherwise.
DEFAULT_MAX_NEW_TOKENS = 32
MAX_NEW_TOKENS_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class GoldenItem:
    prompt: str
    expected: str
    match: Match = Match.EXACT
    tolerance: float = DEFAULT_TOLERANCE
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS


@dataclass(frozen=True, slots=True)
class Judged:
    """One item's verdict: its score (0..1) and whether it passes."""

    score: float
    ok: bool


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def similarity(output: str, expected: str) -> float:
    """difflib's ratio between the two texts, case and whitespace runs aside (0..1)."""
    return difflib.SequenceMatcher(None, _normal(output), _normal(expected), autojunk=False).ratio()


def judge(output: str, item: GoldenItem) -> Judged:
    """Whether `output` matches `item` as its `match` says."""
    if item.match == Match.EXACT:
        ok = output.strip() == item.expected.strip()
        return Judged(1.0 if ok else 0.0, ok)
    if item.match == Match.CONTAINS:
        ok = item.expected in output
        return Judged(1.0 if ok else 0.0, ok)
    score = similarity(output, item.expected)
    return Judged(score, score >= item.tolerance)


def parse_item(raw: Any) -> GoldenItem:
    """One golden-set item from its stored JSON; ValueError naming what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("each item must be an object with prompt and expected")
    prompt, expected = raw.get("prompt"), raw.get("expected")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty string")
    if not isinstance(expected, str):
        raise ValueError("expected must be a string")
    match = raw.get("match", Match.EXACT.value)
    if match not in {m.value for m in Match}:
        raise ValueError(f"match must be one of {[m.value for m in Match]}, not {match!r}")
    tolerance = raw.get("tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance <= 1:
        raise ValueError("tolerance must be a number from 0 to 1")
    tokens = raw.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_NEW_TOKENS_LIMIT:
        raise ValueError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}")
    return GoldenItem(prompt, expected, Match(match), float(tolerance), tokens)


def parse_golden_set(raw: Any) -> list[GoldenItem]:
    """A deployment's golden set from its stored JSON; ValueError naming the first bad item."""
    if not isinstance(raw, list):
        raise ValueError("the golden set must be a list of items")
    items: list[GoldenItem] = []
    for index, entry in enumerate(raw):
        try:
            items.append(parse_item(entry))
        except ValueError as exc:
            raise ValueError(f"item {index + 1}: {exc}") from None
    return items
