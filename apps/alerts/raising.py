"""Event alerts: things that happen once (a job failed, a release was rolled back, a node was
lost, a breaker opened) raise an alert on every enabled event rule of their kind whose matchers
match. The alert fires at once and resolves on its own once no event of the same identity came
for the rule's keep-firing time (at least EVENT_FIRING_MIN_S).

The receivers (apps/alerts/receivers.py) call event_raise once the sender's transaction
committed; the evaluation beat calls event_alerts_resolve and breakers_check (breakers live in
Redis and change in async code, so they are read, not heard).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

import redis
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from apps.alerts import selectors, signals
from apps.alerts.domain import matchers as m
from apps.alerts.domain.events import EVENT_IDENTITY, EVENT_LABEL_NAMES, EVENT_LABELS, EventKind
from apps.alerts.domain.rules import RuleKind, alert_labels, fingerprint
from apps.alerts.domain.states import ALERT, OPEN, AlertState
from apps.alerts.domain.templates import render_annotations
from apps.alerts.models import Alert, AlertRule
from apps.core.redis_clients import redis_client
from apps.core.transitions import transition
from apps.serving.domain.breaker import Breaker, BreakerState
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.metrics import placement_labels
from apps.serving.models import Placement
from apps.serving.resilience import Breakers

log = logging.getLogger(__name__)

# An event alert stays firing at least this long after its last event, whatever the rule's
# keep-firing time: long enough for a notification round to see it.
EVENT_FIRING_MIN_S = 60

# What breakers_check saw of each placement's breaker last time: placement id -> opened_count.
BREAKERS_SEEN_KEY = "moc:alerts:breakers_seen"
BREAKERS_SEEN_TTL_S = 86_400


def event_series(event: EventKind, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels an event's alerts carry (before alertname and severity): the kind's own, as
    strings, an empty one left out, and `event`."""
    own = {name: str(labels[name]) for name in EVENT_LABEL_NAMES[event] if labels.get(name) not in (None, "")}
    return {**own, "event": event.value}


def event_fingerprint(rule_id: int, event: EventKind, labels: Mapping[str, str]) -> str:
    """The alert's identity: the rule, the rule's labels, the event kind and its identity labels."""
    keep = {"alertname", "severity", "event", *EVENT_IDENTITY[event]}
    return fingerprint(rule_id, {k: v for k, v in labels.items() if k in keep})


def _rules(event: EventKind) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(kind=RuleKind.EVENT, event=event.value, enabled=True)


def event_watched(event: EventKind) -> bool:
    """Whether an enabled rule watches `event` (else there is nothing to read or raise)."""
    return _rules(event).exists()


def event_raise(
    *,
    event: EventKind,
    labels: Mapping[str, str],
    value: float | None = None,
    now: dt.datetime | None = None,
    details: Mapping[str, str] | None = None,
) -> list[Alert]:
    """Raise (or bump) the alert of every enabled rule of `event` whose matchers match `labels`.

    A new alert fires at once; an open one of the same identity counts one more occurrence and
    takes the latest labels, value and annotations. `details` (a reason, an error) are added to
    the annotations under their own names: they vary too much to be labels. The alerts raised."""
    now = now or timezone.now()
    series = event_series(event, labels)
    return [
        _raise_one(rule, event, series, value, now, details or {})
        for rule in _rules(event)
        if m.matches_all(m.to_matchers(rule.matchers), series)
    ]


def _annotations(
    rule: AlertRule,
    event: EventKind,
    labels: Mapping[str, str],
    value: float | None,
    details: Mapping[str, str],
) -> dict[str, str]:
    summary = rule.summary or EVENT_LABELS[event]
    return {**render_annotations(summary, rule.description, labels, value), **details}


@transaction.atomic
def _raise_one(
    rule: AlertRule,
    event: EventKind,
    series: dict[str, str],
    value: float | None,
    now: dt.datetime,
    details: Mapping[str, str],
) -> Alert:
    labels = alert_labels(rule.name, rule.severity, series)
    key = event_fingerprint(rule.pk, event, labels)
    annotations = _annotations(rule, event, labels, value, details)
    alert = Alert.objects.select_for_update().filter(fingerprint=key, state__in=OPEN).first()
    if alert is None:
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    rule=rule,
                    fingerprint=key,
                    labels=labels,
                    state=AlertState.FIRING.value,
                    annotations=annotations,
                    value=value,
                    fired_value=value,
                    peak_value=value,
                    started_at=now,
                    fired_at=now,
                    last_breach_at=now,
                    silenced=m.is_silenced(labels, selectors.silences_in_force(now=now), now),
                )
        except IntegrityError:
            # Another process raised the same identity first: count this one on its alert.
            alert = Alert.objects.select_for_update().get(fingerprint=key, state__in=OPEN)
        else:
            signals.alert_changed.send(sender=Alert, alert=alert)
            return alert
    return _bump(alert, labels, annotations, value, now)


def _bump(
    alert: Alert, labels: dict[str, str], annotations: dict[str, str], value: float | None, now: dt.datetime
) -> Alert:
    """One more occurrence on an open alert (locked by the caller)."""
    peak = alert.peak_value
    if value is not None and (peak is None or value > peak):
        peak = value
    Alert.objects.filter(pk=alert.pk).update(
        occurrences=F("occurrences") + 1,
        labels=labels,
        annotations=annotations,
        value=value,
        peak_value=peak,
        last_breach_at=now,
        updated_at=now,
    )
    alert.refresh_from_db()
    if alert.state == AlertState.PENDING:  # an event alert is never pending; one that is fires now
        transition(alert, AlertState.FIRING, machine=ALERT, fired_at=now, fired_value=value)
    signals.alert_changed.send(sender=Alert, alert=alert)
    return alert


def event_alerts_resolve(*, now: dt.datetime) -> int:
    """Resolve the open event alerts that had no event for their rule's keep-firing time (at least
    EVENT_FIRING_MIN_S), and those of disabled rules at once. How many were resolved."""
    resolved = 0
    for rule in AlertRule.objects.filter(kind=RuleKind.EVENT, alerts__state__in=OPEN).distinct():
        quiet_s = max(rule.keep_firing_seconds, EVENT_FIRING_MIN_S)
        cutoff = now - dt.timedelta(seconds=quiet_s) if rule.enabled else None
        due = rule.alerts.filter(state__in=OPEN)
        if cutoff is not None:
            due = due.filter(last_breach_at__lte=cutoff)
        for alert_id in due.order_by("pk").values_list("pk", flat=True):
            resolved += _resolve(alert_id, cutoff, now)
    return resolved


@transaction.atomic
def _resolve(alert_id: int, cutoff: dt.datetime | None, now: dt.datetime) -> int:
    """Resolve one open event alert, unless an event bumped it past `cutoff` since it was found due
    (it is re-read under the lock _bump takes; None: resolve whatever its last event)."""
    alert = Alert.objects.select_for_update().filter(pk=alert_id, state__in=OPEN).first()
    if alert is None:
        return 0
    if cutoff is not None and alert.last_breach_at is not None and alert.last_breach_at > cutoff:
        return 0
    if not transition(alert, AlertState.RESOLVED, machine=ALERT, resolved_at=now):
        return 0
    signals.alert_changed.send(sender=Alert, alert=alert)
    return 1


def breakers_check(*, now: dt.datetime) -> int:
    """Raise breaker_opened for each time an active placement's breaker opened since the last check.

    The opened counts seen last time are kept in Redis (BREAKERS_SEEN_KEY, for a day). A placement
    seen for the first time raises only when its breaker is open now (it opened before MOC
    looked); a count that went down (the breaker was forgotten) is only recorded. How many
    openings raised an alert (0 with Redis away)."""
    placements = list(
        Placement.objects.filter(state__in=PLACEMENT_ACTIVE).select_related("version__model", "device__node")
    )
    try:
        client = redis_client(timeout=1.0)
        seen = {int(k): int(v) for k, v in client.hgetall(BREAKERS_SEEN_KEY).items()}
        breakers = Breakers(client).get(p.pk for p in placements) if placements else {}
    except redis.RedisError as exc:
        log.warning("could not read the placements' breakers: %s", exc)
        return 0
    raised = 0
    counts: dict[str, int] = {}
    for placement in placements:
        breaker = breakers.get(placement.pk) or Breaker()
        counts[str(placement.pk)] = breaker.opened_count
        openings = _openings(seen.get(placement.pk), breaker)
        for _ in range(openings):
            try:
                event_raise(
                    event=EventKind.BREAKER_OPENED,
                    labels=placement_labels(placement),
                    value=float(breaker.opened_count),
                    now=now,
                    details={"error": breaker.last_error} if breaker.last_error else None,
                )
            except Exception:
                log.exception("could not raise breaker_opened for placement %s", placement.pk)
                break
            raised += 1
    try:
        _remember(client, counts)
    except redis.RedisError as exc:
        log.warning("could not record the breakers seen: %s", exc)
    return raised


def _openings(before: int | None, breaker: Breaker) -> int:
    """How many openings of `breaker` are new since the count seen `before` (None: never seen)."""
    if before is None:
        return 1 if breaker.state == BreakerState.OPEN else 0
    return max(0, breaker.opened_count - before)


def _remember(client: redis.Redis, counts: dict[str, int]) -> None:
    """Keep exactly `counts` (the active placements') as the counts seen."""
    pipe = client.pipeline()
    pipe.delete(BREAKERS_SEEN_KEY)
    if counts:
        pipe.hset(BREAKERS_SEEN_KEY, mapping=counts)
        pipe.expire(BREAKERS_SEEN_KEY, BREAKERS_SEEN_TTL_S)
    pipe.execute()
