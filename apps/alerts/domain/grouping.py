"""Notification groups, as Alertmanager's aggregation groups: which group an alert is in, what a
group's notification tells, and when it is due (group_wait, group_interval, repeat_interval).

A channel's `group_by` labels split its alerts into groups; ["..."] puts each alert on its own.
A group's notification tells its loud firing alerts (not silenced, inhibited nor acknowledged), and
(with send_resolved) the resolved alerts that it told as firing. It is due:
- first, group_wait after the group was first seen (more alerts may join meanwhile);
- after a change (a loud alert it did not tell started firing, or, with send_resolved, one it told
  resolved), group_interval after the last one; muting an alert it told is no change;
- unchanged and still firing, repeat_interval after the last one.
An alert it told as firing and that is muted since stays remembered as firing, so its resolution
is still told. A group with nothing to tell and nothing remembered as firing is dropped.

Event alerts (a job failed) fire once and resolve on their own a minute later, so Alertmanager's
timers could let one go untold. Each is told at least once: one that joins a group that was
notified is due group_wait after it fired (not group_interval), and one that resolved before it
was told is told once, as resolved with its start (as firing, where resolutions are not sent).
Until then the group remembers it as PENDING.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from apps.alerts.domain.matchers import LABEL_NAME

ALL_LABELS = "..."
FIRING = "firing"
RESOLVED = "resolved"
PENDING = "pending"  # an event alert the group saw but has not told yet


@dataclass(frozen=True, slots=True)
class GroupAlert:
    fingerprint: str
    labels: Mapping[str, str]
    status: str  # FIRING or RESOLVED
    muted: bool = False  # silenced, inhibited or acknowledged (when it resolved, for a resolved one)
    event_at: dt.datetime | None = None  # an event alert: when it fired; None for a threshold alert


@dataclass(frozen=True, slots=True)
class Timing:
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class GroupState:
    """What a group's notifications told: when it was first seen and last notified, and each
    alert's status as told (fingerprint -> FIRING / RESOLVED, or PENDING: an event not told yet)."""

    first_seen_at: dt.datetime
    last_sent_at: dt.datetime | None
    sent: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one group now."""

    alerts: tuple[GroupAlert, ...]  # what a notification now would tell
    due: bool  # notify now
    drop: bool  # nothing left to tell or remember: forget the group
    sent: dict[str, str]  # the group's `sent` after this round (notified or not)

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


def _ordered(alerts: Iterable[GroupAlert]) -> tuple[GroupAlert, ...]:
    return tuple(sorted(alerts, key=lambda a: (a.status != FIRING, a.fingerprint)))


def plan(
    alerts: Sequence[GroupAlert],
    state: GroupState | None,
    timing: Timing,
    now: dt.datetime,
    *,
    unconfirmed: frozenset[str] = frozenset(),
) -> Plan:
    """What to do with a group now.

    `alerts` are its firing alerts (muted ones flagged) and resolved ones: those it told as firing,
    event alerts not told yet, and those in `unconfirmed`; `state` is None for a group never seen
    before. `unconfirmed` are the fingerprints of the group's deliveries still being sent, which a
    new notification replaces: their resolutions are told again in it (they never make it due)."""
    told = dict(state.sent) if state else {}
    told_firing = {fp for fp, status in told.items() if status == FIRING}
    firing = {a.fingerprint: a for a in alerts if a.status == FIRING}
    loud = {fp: a for fp, a in firing.items() if not a.muted}
    kept = {fp for fp, a in firing.items() if a.muted and fp in told_firing}
    gone = {a.fingerprint: a for a in alerts if a.status == RESOLVED and a.fingerprint not in firing}
    resolving = {fp: a for fp, a in gone.items() if fp in told_firing}
    untold = {
        fp: a
        for fp, a in gone.items()
        if a.event_at is not None
        and not a.muted
        and fp not in told_firing
        and fp not in unconfirmed
        and told.get(fp, PENDING) == PENDING
    }
    retold = {
        fp: a for fp, a in gone.items() if fp in unconfirmed and fp not in told_firing and fp not in untold
    }
    told_resolved = resolving if timing.send_resolved else {}
    # An event that resolved untold is told as it ended; as firing where resolutions are not sent.
    event_status = RESOLVED if timing.send_resolved else FIRING
    content = [
        *loud.values(),
        *told_resolved.values(),
        *(replace(a, status=event_status) for a in untold.values()),
    ]
    fresh = [
        a.event_at
        for a in [*loud.values(), *untold.values()]
        if a.event_at and a.fingerprint not in told_firing
    ]
    if not content and not kept:
        return Plan(alerts=(), due=False, drop=True, sent={})
    if state is None or state.last_sent_at is None:
        since = state.first_seen_at if state else now
        due = _passed(now, since, timing.group_wait_s)
    else:
        changed = bool(loud.keys() - told_firing) or bool(told_resolved)
        interval = timing.group_interval_s if changed else timing.repeat_interval_s
        due = _passed(now, state.last_sent_at, interval) or bool(
            fresh and _passed(now, min(fresh), timing.group_wait_s)
        )
    if not (due and content):
        # Not yet: remember the events seen, so one that resolves meanwhile is still told.
        seen = {fp for fp, a in loud.items() if a.event_at is not None and fp not in told_firing}
        sent = {**told, **dict.fromkeys(seen | untold.keys(), PENDING)}
        return Plan(_ordered(content), due=False, drop=False, sent=sent)
    if timing.send_resolved:
        content.extend(retold.values())
    sent = {
        **dict.fromkeys(kept, FIRING),
        **dict.fromkeys(loud, FIRING),
        **{fp: RESOLVED for fp in [*told_resolved, *untold, *(retold if timing.send_resolved else ())]},
    }
    return Plan(_ordered(content), due=True, drop=False, sent=sent)


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
