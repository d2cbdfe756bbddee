"""What fired, how long and how often (Alertmanager #1976): the history page's figures.

Read from the alerts themselves (kept MOC_ALERT_RETENTION_DAYS): an alert counts on the day it
fired, and its time firing is the part of [fired_at, resolved_at or now] inside the window.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from typing import Any

from django.urls import reverse
from django.utils import timezone

from apps.alerts.models import Alert, AlertRule

DAYS_MAX = 90


def _firing_s(
    fired_at: dt.datetime, resolved_at: dt.datetime | None, since: dt.datetime, now: dt.datetime
) -> float:
    """Seconds an alert fired inside [since, now]."""
    start = max(fired_at, since)
    end = min(resolved_at or now, now)
    return max(0.0, (end - start).total_seconds())


def history_summary(*, days: int, now: dt.datetime) -> dict[str, Any]:
    """Per rule: alerts fired per day over the last `days` days (today included), their time
    firing (total and median) and when the rule last fired; rules that fired nothing are left out.

    {"days", "since", "until", "dates": [iso date, ...], "fired", "firing_s",
     "rules": [{"id", "name", "severity", "url", "fired", "per_day": [count per date],
                "firing_s", "median_firing_s", "last_fired_at"}]}   (most fired first)
    """
    days = max(1, min(days, DAYS_MAX))
    today = timezone.localdate(now)
    dates = [today - dt.timedelta(days=days - 1 - i) for i in range(days)]
    since = timezone.make_aware(dt.datetime.combine(dates[0], dt.time.min), timezone.get_current_timezone())
    index = {d: i for i, d in enumerate(dates)}
    # Alerts that fired before the window but were still firing in it count towards time firing.
    rows = (
        Alert.objects.filter(fired_at__isnull=False, fired_at__lte=now)
        .exclude(resolved_at__lt=since)
        .values_list("rule_id", "fired_at", "resolved_at")
    )
    per_day: dict[int, list[int]] = defaultdict(lambda: [0] * days)
    spans: dict[int, list[float]] = defaultdict(list)
    last: dict[int, dt.datetime] = {}
    for rule_id, fired_at, resolved_at in rows:
        spans[rule_id].append(_firing_s(fired_at, resolved_at, since, now))
        day = index.get(timezone.localdate(fired_at))
        if day is not None:
            per_day[rule_id][day] += 1
        if rule_id not in last or fired_at > last[rule_id]:
            last[rule_id] = fired_at
    rules = AlertRule.objects.filter(pk__in=spans).only("name", "severity")
    summary = [
        {
            "id": rule.pk,
            "name": rule.name,
            "severity": rule.severity,
            "url": reverse("alerts:rule_detail", args=[rule.pk]),
            "fired": sum(per_day[rule.pk]),
            "per_day": per_day[rule.pk],
            "firing_s": round(sum(spans[rule.pk]), 1),
            "median_firing_s": round(statistics.median(spans[rule.pk]), 1),
            "last_fired_at": last[rule.pk].isoformat(),
        }
        for rule in rules
    ]
    summary.sort(key=lambda r: (-r["fired"], -r["firing_s"], r["name"]))
    return {
        "days": days,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "dates": [d.isoformat() for d in dates],
        "fired": sum(r["fired"] for r in summary),
        "firing_s": round(sum(r["firing_s"] for r in summary), 1),
        "rules": summary,
    }
