"""What a rule would have fired over stored samples: evaluate_rule replayed snapshot by snapshot."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from apps.alerts.domain.evaluation import OpenAlert, RuleSpec, Sample, evaluate_rule, peak
from apps.alerts.domain.states import AlertState


@dataclass(frozen=True, slots=True)
class Fired:
    """One alert the rule would have had. fired_at None: it stayed pending; resolved_at None: it was
    still open at the last snapshot."""

    labels: dict[str, str]
    started_at: dt.datetime
    fired_at: dt.datetime | None
    resolved_at: dt.datetime | None
    peak_value: float


def replay(rule: RuleSpec, snapshots: Sequence[tuple[dt.datetime, Sequence[Sample]]]) -> list[Fired]:
    """Every alert the rule would have opened over `snapshots` (taken in time order), by start time."""
    open_alerts: dict[str, OpenAlert] = {}
    alerts: dict[str, Fired] = {}  # fingerprint -> the open alert's record
    done: list[Fired] = []
    for now, samples in sorted(snapshots, key=lambda snapshot: snapshot[0]):
        for d in evaluate_rule(rule, samples, open_alerts, now):
            alert = open_alerts.get(d.fingerprint)
            record = alerts.get(d.fingerprint)
            if alert is None or record is None:
                # A new alert: evaluate_rule only opens one on a breach, so the value is there.
                value = d.value if d.value is not None else rule.threshold
                alert = OpenAlert(d.fingerprint, d.state, now, now, d.labels)
                record = Fired(d.labels, now, now if d.state == AlertState.FIRING else None, None, value)
            else:
                if d.breach and d.value is not None:
                    alert = replace(alert, last_breach_at=now)
                    top = peak(rule.op, rule.threshold, record.peak_value, d.value)
                    record = replace(record, peak_value=top)
                if d.state == AlertState.FIRING and record.fired_at is None:
                    record = replace(record, fired_at=now)
                alert = replace(alert, state=d.state.value)
            if d.state == AlertState.RESOLVED:
                done.append(replace(record, resolved_at=now))
                del open_alerts[d.fingerprint], alerts[d.fingerprint]
            else:
                open_alerts[d.fingerprint], alerts[d.fingerprint] = alert, record
    return sorted([*done, *alerts.values()], key=lambda f: (f.started_at, sorted(f.labels.items())))
