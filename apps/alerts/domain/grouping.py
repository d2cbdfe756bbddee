"""Notification groups, as Alertmanager's aggregation groups: which group an alert is in, what a
group's notification tells, and when it is due (group_wait, group_interval, repeat_interval).

A channel's `group_by` labels split its alerts into groups; ["..."] puts each alert on its own.
A group's notification tells its firing alerts, and (with send_resolved) the resolved alerts that
its last notification told as firing. It is due:
- first, group_wait after the group was first seen (more alerts may join meanwhile);
- after a change (an alert started firing, or one stopped), group_interval after the last one;
- unchanged and still firing, repeat_interval after the last one.
A group with nothing firing and nothing resolved left to tell is dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from apps.alerts.domain.matchers import LABEL_NAME

ALL_LABELS = "..."
FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class GroupAlert:
    fingerprint: str
    labels: Mapping[str, str]
    status: str  # FIRING or RESOLVED


@dataclass(frozen=True, slots=True)
class Timing:
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class GroupState:
    """What a group's last notification told: when it was first seen and last notified, and each
    alert's status then (fingerprint -> FIRING / RESOLVED)."""

    first_seen_at: dt.datetime
    last_sent_at: dt.datetime | None
    sent: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one group now."""

    alerts: tuple[GroupAlert, ...]  # what a notification now would tell
    due: bool  # notify now
    drop: bool  # nothing left to tell: forget the group
    sent: dict[str, str]  # the group's `sent` once notified

    @property
    def firing(self) -> int:
        return sum(a.status == FIRING for a in self.alerts)

    @property
    def resolved(self) -> int:
        return len(self.alerts) - self.firing


def group_labels(labels: Mapping[str, str], group_by: Sequence[str]) -> dict[str, str]:
    """The labels that name an alert's group: its values of `group_by` (all of them for ["..."]);
    a label the alert lacks is left out, as Alertmanager does."""
    if ALL_LABELS in group_by:
        return dict(sorted(labels.items()))
    return {k: labels[k] for k in sorted(set(group_by)) if k in labels}


def group_key(labels: Mapping[str, str]) -> str:
    """A short stable hash of a group's labels."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def split(
    alerts: Iterable[GroupAlert], group_by: Sequence[str]
) -> dict[str, tuple[dict[str, str], list[GroupAlert]]]:
    """Alerts by group key, with each group's labels."""
    groups: dict[str, tuple[dict[str, str], list[GroupAlert]]] = {}
    for alert in alerts:
        labels = group_labels(alert.labels, group_by)
        groups.setdefault(group_key(labels), (labels, []))[1].append(alert)
    return groups


def _passed(now: dt.datetime, since: dt.datetime, seconds: float) -> bool:
    return (now - since).total_seconds() >= seconds


def plan(alerts: Sequence[GroupAlert], state: GroupState | None, timing: Timing, now: dt.datetime) -> Plan:
    """What to do with a group now. `alerts` are its notifiable firing alerts and any resolved
    ones (those its last notification did not tell as firing are ignored); `state` is None for a
    group never seen before."""
    told_firing = {fp for fp, status in (state.sent if state else {}).items() if status == FIRING}
    firing = {a.fingerprint: a for a in alerts if a.status == FIRING}
    resolved = {
        a.fingerprint: a
        for a in alerts
        if a.status == RESOLVED and a.fingerprint in told_firing and a.fingerprint not in firing
    }
    told = [*firing.values(), *(resolved.values() if timing.send_resolved else ())]
    content = tuple(sorted(told, key=lambda a: (a.status != FIRING, a.fingerprint)))
    sent = {a.fingerprint: a.status for a in content}
    if not firing and not (resolved and timing.send_resolved):
        return Plan(alerts=(), due=False, drop=True, sent={})
    if state is None or state.last_sent_at is None:
        since = state.first_seen_at if state else now
        return Plan(content, due=_passed(now, since, timing.group_wait_s), drop=False, sent=sent)
    changed = set(firing) != told_firing
    interval = timing.group_interval_s if changed else timing.repeat_interval_s
    return Plan(content, due=_passed(now, state.last_sent_at, interval), drop=False, sent=sent)


def group_by_errors(value: object) -> list[str]:
    """What is wrong with a channel's group_by: a list of label names, or ["..."]."""
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return ['must be a list of label names, or ["..."] for each alert on its own']
    if ALL_LABELS in value:
        return [] if value == [ALL_LABELS] else ['"..." groups each alert alone and stands by itself']
    bad = [x for x in value if not LABEL_NAME.fullmatch(x)]
    errors = [f"{x!r} is not a label name" for x in bad]
    if len(set(value)) != len(value):
        errors.append("names a label twice")
    return errors
