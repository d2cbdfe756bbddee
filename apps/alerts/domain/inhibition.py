"""Inhibition, with Alertmanager's semantics: while an alert matching a rule's source matchers fires,
open alerts matching its target matchers that carry the same values of every `equal` label are muted
(a node that is down mutes the alerts of its devices). An alert never inhibits itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from apps.alerts.domain.matchers import LABEL_NAME, Matcher, matches_all


@dataclass(frozen=True, slots=True)
class InhibitSpec:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


def inhibited(
    labels: Mapping[str, str], firing: Sequence[Mapping[str, str]], rules: Sequence[InhibitSpec]
) -> bool:
    """Whether the alert with `labels` is muted by one of the `firing` alerts under one of `rules`.

    A missing `equal` label reads as the empty string on both sides, as in Alertmanager.
    """
    for rule in rules:
        if not matches_all(rule.target, labels):
            continue
        for source in firing:
            if source == labels or not matches_all(rule.source, source):
                continue
            if all(source.get(name, "") == labels.get(name, "") for name in rule.equal):
                return True
    return False


def equal_errors(value: object) -> list[str]:
    """What is wrong with an inhibit rule's `equal`: it lists label names (the admin and the API)."""
    if not isinstance(value, list):
        return ["must be a list of label names"]
    return [
        f"{x!r} is not a label name" for x in value if not (isinstance(x, str) and LABEL_NAME.fullmatch(x))
    ]
