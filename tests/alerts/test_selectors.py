"""Reading alerts: firing first, silences in force, the webhook preview, the Overview card."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.alerts import selectors
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory, SilenceFactory

pytestmark = pytest.mark.django_db


def test_alerts_list_firing_then_pending_then_resolved() -> None:
    resolved = AlertFactory(state=AlertState.RESOLVED, series={"n": "1"})
    pending = AlertFactory(state=AlertState.PENDING, series={"n": "2"})
    firing = AlertFactory(state=AlertState.FIRING, series={"n": "3"})

    assert list(selectors.alert_list()) == [firing, pending, resolved]


def test_among_firing_alerts_critical_comes_first() -> None:
    info = AlertFactory(rule=AlertRuleFactory(severity="info"))
    critical = AlertFactory(rule=AlertRuleFactory(severity="critical"))
    warning = AlertFactory(rule=AlertRuleFactory(severity="warning"))

    assert list(selectors.alert_list()) == [critical, warning, info]


def test_rules_count_their_open_alerts() -> None:
    rule = AlertRuleFactory()
    AlertFactory(rule=rule, series={"n": "1"})
    AlertFactory(rule=rule, series={"n": "2"}, state=AlertState.RESOLVED)

    assert selectors.alert_rule_list().get(pk=rule.pk).open_alerts == 1


def test_silences_in_force_leaves_out_expired_and_pending_ones() -> None:
    now = timezone.now()
    SilenceFactory(comment="active")
    SilenceFactory(starts_at=now - dt.timedelta(hours=2), ends_at=now - dt.timedelta(hours=1))
    SilenceFactory(starts_at=now + dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=2))

    assert len(selectors.silences_in_force(now=now)) == 1


@override_settings(MOC_PUBLIC_URL="https://moc.example.com")
def test_the_webhook_preview_holds_firing_alerts_no_silence_mutes() -> None:
    SilenceFactory(matchers=[{"label": "node", "op": "=", "value": "gpu-01"}])
    AlertFactory(series={"node": "gpu-01"})
    loud = AlertFactory(series={"node": "gpu-02"})
    AlertFactory(series={"node": "gpu-03"}, state=AlertState.RESOLVED)
    channel = NotificationChannelFactory(name="ops")

    payload = selectors.webhook_preview(channel=channel, now=timezone.now())

    assert [a["fingerprint"] for a in payload["alerts"]] == [loud.fingerprint]
    assert payload["alerts"][0]["generatorURL"] == f"https://moc.example.com/alerts/{loud.pk}/"
    assert (payload["receiver"], payload["externalURL"]) == ("ops", "https://moc.example.com")


def test_the_overview_card_counts_firing_alerts() -> None:
    AlertFactory(rule=AlertRuleFactory(severity="critical"))
    AlertFactory(state=AlertState.PENDING)
    SilenceFactory()

    [card] = selectors.overview_cards()

    assert (card["value"], card["hint"]) == ("1", "1 critical · 1 pending · 1 silence active")


def test_an_acknowledgement_counts_until_it_expires() -> None:
    now = timezone.now()
    AlertFactory(series={"n": "1"}, acknowledged_at=now, ack_expires_at=None)
    AlertFactory(series={"n": "2"}, acknowledged_at=now, ack_expires_at=now + dt.timedelta(hours=1))
    lapsed = AlertFactory(
        series={"n": "3"}, acknowledged_at=now, ack_expires_at=now - dt.timedelta(seconds=1)
    )
    never = AlertFactory(series={"n": "4"})

    in_force = Alert.objects.filter(selectors.acknowledged_q(now))

    assert set(Alert.objects.exclude(pk__in=in_force)) == {lapsed, never}
    assert selectors.firing_count(now=now) == 2


@pytest.mark.parametrize(("retention", "default", "most"), [(90, 30, 90), (7, 7, 7), (400, 30, 90)])
def test_the_history_span_stays_within_what_is_kept(retention: int, default: int, most: int) -> None:
    with override_settings(MOC_ALERT_RETENTION_DAYS=retention):
        assert (selectors.history_days_default(), selectors.history_days_most()) == (default, most)
