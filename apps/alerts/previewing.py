"""A rule's preview: what it would have fired over the last day of stored samples, before it is
saved, with the series it watches for a chart."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from apps.alerts import history
from apps.alerts.domain.evaluation import RuleSpec, Sample, peak
from apps.alerts.domain.matchers import matches_all
from apps.alerts.domain.preview import Fired, replay
from apps.alerts.domain.rules import RULE_LABELS, Op

PREVIEW_SPAN = timedelta(days=1)
MAX_SERIES = 20
MAX_POINTS = 500

Key = tuple[tuple[str, str], ...]


def preview(*, rule: RuleSpec, metric: str, now: datetime) -> dict[str, Any]:
    """The alerts `rule` would have had on `metric` over the day before `now`, and up to MAX_SERIES of
    the series it selects (those that would have alerted first) at up to MAX_POINTS points each."""
    since = now - PREVIEW_SPAN
    out: dict[str, Any] = {"metric": metric, "since": since.isoformat(), "until": now.isoformat()}
    snaps = history.snapshots(metric, since=since, until=now)
    if snaps is None:
        return {
            **out,
            "history": False,
            "reason": f"MOC keeps no history of {metric}; the rule is checked against live values only",
            "alerts": [],
            "series": [],
        }
    fired = replay(rule, snaps)
    series = _series(rule, snaps)
    alerted = {_key(f.labels) for f in fired}
    # Series that alerted first, then those that came closest to the threshold.
    order = sorted(series, key=lambda k: (k not in alerted, -_closeness(rule, series[k])))
    return {
        **out,
        "history": True,
        "alerts": [_fired(f) for f in fired],
        "series": [
            {"labels": dict(k), "points": [[t.isoformat(), v] for t, v in _thinned(rule, series[k])]}
            for k in order[:MAX_SERIES]
        ],
        "series_total": len(series),
    }


def _key(labels: Mapping[str, str]) -> Key:
    """A series' identity: its labels without the ones the rule adds to its alerts."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in RULE_LABELS))


def _series(
    rule: RuleSpec, snaps: Sequence[tuple[datetime, Sequence[Sample]]]
) -> dict[Key, list[tuple[datetime, float]]]:
    """The points of each series the rule's matchers select."""
    series: dict[Key, list[tuple[datetime, float]]] = {}
    for at, samples in snaps:
        for sample in samples:
            if matches_all(rule.matchers, sample.labels):
                series.setdefault(_key(sample.labels), []).append((at, sample.value))
    return series


def _closeness(rule: RuleSpec, points: Sequence[tuple[datetime, float]]) -> float:
    """How far past (positive) or short of (negative) the threshold the series' peak went."""
    top = None
    for _, value in points:
        top = peak(rule.op, rule.threshold, top, value)
    if top is None or math.isnan(top):
        return -math.inf
    if rule.op in (Op.GT, Op.GE):
        return top - rule.threshold
    if rule.op in (Op.LT, Op.LE):
        return rule.threshold - top
    past = abs(top - rule.threshold)
    return past if rule.op == Op.NE else -past


def _thinned(rule: RuleSpec, points: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """At most MAX_POINTS points: each run of consecutive points becomes its first time and the value
    furthest past the threshold (a chart must still show what crossed it)."""
    step = max(1, math.ceil(len(points) / MAX_POINTS))
    thinned = []
    for start in range(0, len(points), step):
        run = points[start : start + step]
        top = None
        for _, value in run:
            top = peak(rule.op, rule.threshold, top, value)
        assert top is not None
        thinned.append((run[0][0], top))
    return thinned


def _fired(alert: Fired) -> dict[str, Any]:
    found = asdict(alert)
    for moment in ("started_at", "fired_at", "resolved_at"):
        found[moment] = found[moment].isoformat() if found[moment] is not None else None
    return found
