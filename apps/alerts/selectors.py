"""Reads of alerts, rules, silences and channels, and the Overview cards."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Hashable
from typing import Any

from django.conf import settings
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.urls import reverse
from django.utils import timezone

from apps.alerts import reports
from apps.alerts.domain import matchers as m
from apps.alerts.domain.inhibition import InhibitSpec, equal_errors
from apps.alerts.domain.rules import SEVERITY_RANK
from apps.alerts.domain.states import OPEN, AlertState
from apps.alerts.domain.webhook import webhook_payload
from apps.alerts.models import Alert, AlertRule, Delivery, InhibitRule, NotificationChannel, Silence
from apps.alerts.notifying import notifiable, notified

log = logging.getLogger(__name__)
_WARNED: set[Hashable] = set()  # the unusable silences and inhibit rules this process has logged

# The history's span when none is asked for (less when alerts are pruned sooner).
HISTORY_DAYS = 30
# Firing first, then pending, then resolved.
_STATE_RANK = {AlertState.FIRING.value: 0, AlertState.PENDING.value: 1, AlertState.RESOLVED.value: 2}


def _rank(field: str, ranks: dict[str, int]) -> Case:
    return Case(
        *[When(**{field: key}, then=Value(r)) for key, r in ranks.items()],
        default=Value(len(ranks)),
        output_field=IntegerField(),
    )


def alert_list() -> QuerySet[Alert]:
    """Alerts that need attention first: firing, then pending, then resolved; critical first within each."""
    return (
        Alert.objects.select_related("rule", "acknowledged_by")
        .annotate(
            state_rank=_rank("state", _STATE_RANK), severity_rank=_rank("rule__severity", SEVERITY_RANK)
        )
        .order_by("state_rank", "severity_rank", "-started_at", "-id")
    )


def alert_rule_list() -> QuerySet[AlertRule]:
    open_alerts = Count("alerts", filter=Q(alerts__state__in=OPEN))
    # GROUP BY queries drop Meta.ordering, so it is repeated here.
    return AlertRule.objects.annotate(open_alerts=open_alerts).order_by("name")


def silence_list() -> QuerySet[Silence]:
    """Silences still in force (active or pending) first, then expired ones, latest end first."""
    expired = Case(
        When(ends_at__lte=timezone.now(), then=Value(1)), default=Value(0), output_field=IntegerField()
    )
    return (
        Silence.objects.select_related("created_by")
        .annotate(expired=expired)
        .order_by("expired", "-ends_at", "-id")
    )


def notification_channel_list() -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.all()


def delivery_list() -> QuerySet[Delivery]:
    """Notifications, latest first."""
    return Delivery.objects.order_by("-created_at", "-id")


def inhibit_rule_list() -> QuerySet[InhibitRule]:
    return InhibitRule.objects.all()


def silences_in_force(*, now: dt.datetime) -> list[m.Silence]:
    """Silences active at `now`, as the domain's plain values. One whose matchers cannot be matched
    (a regular expression that does not compile, written around the checks) is left out with a
    warning once a process, rather than failing the match of every alert against every silence."""
    usable = []
    for row in Silence.objects.filter(starts_at__lte=now, ends_at__gt=now).order_by("pk"):
        if problems := m.matcher_errors(row.matchers, require_one=False):
            _warn_once(("silence", row.pk), "alerts: silence %s is left out: %s", row.pk, "; ".join(problems))
            continue
        usable.append(m.Silence(m.to_matchers(row.matchers), row.starts_at, row.ends_at))
    return usable


def inhibit_specs() -> list[InhibitSpec]:
    """The enabled inhibit rules as the domain's values; one whose matchers or `equal` cannot be
    used is left out, with a warning once a process, and the others still inhibit."""
    specs = []
    for rule in InhibitRule.objects.filter(enabled=True).order_by("pk"):
        problems = [
            *(f"source {p}" for p in m.matcher_errors(rule.source_matchers, require_one=False)),
            *(f"target {p}" for p in m.matcher_errors(rule.target_matchers, require_one=False)),
            *(f"equal: {p}" for p in equal_errors(rule.equal)),
        ]
        if problems:
            _warn_once(
                ("inhibit rule", rule.pk),
                "alerts: inhibit rule %s (%s) is left out: %s",
                rule.pk,
                rule.name,
                "; ".join(problems),
            )
            continue
        specs.append(
            InhibitSpec(
                m.to_matchers(rule.source_matchers), m.to_matchers(rule.target_matchers), tuple(rule.equal)
            )
        )
    return specs


def _warn_once(key: Hashable, message: str, *args: object) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message, *args)


def webhook_preview(*, channel: NotificationChannel, now: dt.datetime) -> dict[str, Any]:
    """The Alertmanager-format payload `channel` would get for the firing alerts nothing mutes
    (no silence in force now, not inhibited, not acknowledged)."""
    firing = list(alert_list().filter(state=AlertState.FIRING))
    silences = silences_in_force(now=now)
    loud = [a for a in firing if notifiable(a, now) and not m.is_silenced(a.labels, silences, now)]
    external_url = settings.MOC_PUBLIC_URL
    return webhook_payload(
        [notified(a) for a in loud],
        receiver=channel.name,
        external_url=external_url,
        group_by=channel.group_by,
        max_alerts=channel.config.get("max_alerts", 0),
    )


def overview_cards() -> list[dict]:
    counts = Alert.objects.aggregate(
        firing=Count("pk", filter=Q(state=AlertState.FIRING)),
        critical=Count("pk", filter=Q(state=AlertState.FIRING, rule__severity="critical")),
        pending=Count("pk", filter=Q(state=AlertState.PENDING)),
    )
    now = timezone.now()
    silenced = Silence.objects.filter(starts_at__lte=now, ends_at__gt=now).count()
    plural = "" if silenced == 1 else "s"
    hint = f"{counts['critical']} critical · {counts['pending']} pending · {silenced} silence{plural} active"
    return [
        {
            "label": "Alerts firing",
            "value": str(counts["firing"]),
            "url": reverse("alerts:list"),
            "hint": hint,
        }
    ]


def acknowledged_q(now: dt.datetime) -> Q:
    """Alerts whose acknowledgement is in force at `now`: given and not expired (the query form
    of states.ack_in_force, which Alert.acknowledged uses)."""
    return Q(acknowledged_at__isnull=False) & (Q(ack_expires_at__isnull=True) | Q(ack_expires_at__gt=now))


def firing_count(*, now: dt.datetime) -> int:
    """The bell's count: alerts firing that nothing mutes (silence, inhibition) and nobody is on
    (an acknowledgement that has not expired)."""
    return (
        Alert.objects.filter(state=AlertState.FIRING, silenced=False, inhibited=False)
        .exclude(acknowledged_q(now))
        .count()
    )


def alerts_page(*, now: dt.datetime, resolved_hours: int = 24) -> QuerySet[Alert]:
    """The alerts page's default rows: open alerts, then those resolved in the last `resolved_hours`."""
    recent = Q(state=AlertState.RESOLVED, resolved_at__gte=now - dt.timedelta(hours=resolved_hours))
    return alert_list().filter(Q(state__in=OPEN) | recent)


def silences_matching(alert: Alert, *, now: dt.datetime) -> list[Silence]:
    """Silences not yet expired whose matchers match the alert's labels (or made from it)."""
    rows = Silence.objects.select_related("created_by").filter(ends_at__gt=now)
    return [
        s for s in rows if s.alert_id == alert.pk or m.matches_all(m.to_matchers(s.matchers), alert.labels)
    ]


def alert_deliveries(alert: Alert, *, limit: int = 50) -> QuerySet[Delivery]:
    """Notifications that carried the alert (its fingerprint is in the delivery's list)."""
    # JSON text search works on SQLite and PostgreSQL alike; fingerprints are 16 hex digits.
    return (
        Delivery.objects.select_related("channel")
        .filter(fingerprints__icontains=alert.fingerprint)
        .order_by("-created_at", "-id")[:limit]
    )


def channel_deliveries(channel: NotificationChannel, *, limit: int = 50) -> QuerySet[Delivery]:
    return channel.deliveries.order_by("-created_at", "-id")[:limit]


def history_days_most() -> int:
    """The longest history span there is: alerts older than MOC_ALERT_RETENTION_DAYS are pruned,
    and the report charts DAYS_MAX days at most."""
    return min(settings.MOC_ALERT_RETENTION_DAYS, reports.DAYS_MAX)


def history_days_default() -> int:
    return min(HISTORY_DAYS, history_days_most())
