"""Label matchers and silences, with Alertmanager's semantics.

A matcher is {"label", "op", "value"} with op `=`, `!=`, `=~` or `!~`; regular expressions
must match the whole label value (Alertmanager anchors them), and a missing label reads as
the empty string. A silence mutes an alert when all its matchers match and
starts_at <= now < ends_at.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == MatchOp.EQ:
            return actual == self.value
        if self.op == MatchOp.NE:
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == MatchOp.RE else not found


@dataclass(frozen=True, slots=True)
class Silence:
    matchers: tuple[Matcher, ...]
    starts_at: dt.datetime
    ends_at: dt.datetime


class SilenceStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


def silence_status(starts_at: dt.datetime, ends_at: dt.datetime, now: dt.datetime) -> SilenceStatus:
    if now >= ends_at:
        return SilenceStatus.EXPIRED
    return SilenceStatus.ACTIVE if now >= starts_at else SilenceStatus.PENDING


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def is_silenced(labels: Mapping[str, str], silences: Iterable[Silence], now: dt.datetime) -> bool:
    """Whether any silence active at `now` matches every one of its matchers against `labels`."""
    return any(
        silence_status(s.starts_at, s.ends_at, now) is SilenceStatus.ACTIVE
        and matches_all(s.matchers, labels)
        for s in silences
    )


def matcher_errors(raw: Any, *, require_one: bool) -> list[str]:
    """Everything wrong with a JSON list of matchers; empty when it is valid.

    A silence needs at least one matcher that does not match the empty string, so it
    cannot mute every alert by accident (Alertmanager's rule).
    """
    if not isinstance(raw, list):
        return ["must be a list of {label, op, value} objects"]
    errors: list[str] = []
    for n, item in enumerate(raw, start=1):
        errors += [f"matcher {n}: {e}" for e in _item_errors(item)]
    if errors or not require_one:
        return errors
    if not any(not m.matches({}) for m in to_matchers(raw)):
        errors.append("at least one matcher must not match an empty label (it would silence everything)")
    return errors


def _item_errors(item: Any) -> list[str]:
    if not isinstance(item, dict):
        return ["must be an object with label, op and value"]
    errors = [f"'{k}' is not a matcher field" for k in sorted(item.keys() - {"label", "op", "value"})]
    label, op, value = item.get("label"), item.get("op"), item.get("value")
    if not isinstance(label, str) or not LABEL_NAME.fullmatch(label):
        errors.append("label: must be a label name (letters, digits, underscores; not starting with a digit)")
    if op not in {o.value for o in MatchOp}:
        errors.append(f"op: must be one of {', '.join(o.value for o in MatchOp)}")
    if not isinstance(value, str):
        errors.append("value: must be a string")
    elif op in {MatchOp.RE, MatchOp.NRE}:
        try:
            re.compile(value)
        except re.error as exc:
            errors.append(f"value: {value!r} is not a valid regular expression ({exc})")
    return errors


def to_matchers(raw: Iterable[Mapping[str, str]]) -> tuple[Matcher, ...]:
    """Matchers from their validated JSON form."""
    return tuple(Matcher(m["label"], m["op"], m["value"]) for m in raw)


_TEXT_MATCHER = re.compile(
    r"""\s*(?P<label>[^\s=!~,{}]+)\s*(?P<op>=~|!~|!=|=)\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^,}]*?))\s*(?:,|$)"""
)


def parse_matchers(text: str) -> list[dict[str, str]]:
    """Matchers from Alertmanager's text form: `alertname="GpuHot", node=~"gpu-0[12]"`.

    Braces around the list are optional; values may be quoted. Raises ValueError naming
    the part it could not read. The result still needs matcher_errors().
    """
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers, pos = [], 0
    while pos < len(body):
        found = _TEXT_MATCHER.match(body, pos)
        if found is None or found.end() == pos:
            raise ValueError(f'cannot read a matcher at “{body[pos:].strip()}”; write label="value"')
        value = found["quoted"]
        value = re.sub(r'\\(["\\])', r"\1", value) if value is not None else found["bare"].strip()
        matchers.append({"label": found["label"], "op": found["op"], "value": value})
        pos = found.end()
    return matchers


def format_matchers(raw: Iterable[Mapping[str, str]]) -> str:
    """The text form of matchers, as parse_matchers reads it."""
    parts = []
    for m in raw:
        value = m["value"].replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'{m["label"]}{m["op"]}"{value}"')
    return ", ".join(parts)
