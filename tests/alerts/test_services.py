"""Writing alerts: observations through the state machine, acknowledging, silences."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.alerts import services
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, Silence
from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, AlertRuleFactory, SilenceFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
SERIES = {"node": "gpu-01", "gpu": "0"}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def rule() -> Any:
    return AlertRuleFactory(name="GpuHot", op=">", threshold=85.0, for_seconds=60, severity="critical")


def test_a_quiet_value_opens_no_alert(rule: Any) -> None:
    assert services.alert_observe(rule=rule, series=SERIES, value=70.0, now=T0) is None
    assert not Alert.objects.exists()


def test_a_breaching_value_opens_a_pending_alert_with_the_rules_labels(rule: Any) -> None:
    alert = services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)

    assert (alert.state, alert.started_at, alert.value) == (AlertState.PENDING, T0, 90.0)
    assert alert.labels == {**SERIES, "alertname": "GpuHot", "severity": "critical"}


def test_the_alert_fires_once_the_condition_held_for_the_duration(rule: Any) -> None:
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)

    alert = services.alert_observe(rule=rule, series=SERIES, value=92.0, now=at(60))

    assert (alert.state, alert.fired_at, alert.value) == (AlertState.FIRING, at(60), 92.0)
    assert Alert.objects.count() == 1


def test_the_alert_stays_pending_before_the_duration(rule: Any) -> None:
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)

    alert = services.alert_observe(rule=rule, series=SERIES, value=90.0, now=at(59))

    assert alert.state == AlertState.PENDING


def test_a_pending_alert_resolves_when_the_condition_stops(rule: Any) -> None:
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)

    alert = services.alert_observe(rule=rule, series=SERIES, value=80.0, now=at(30))

    assert (alert.state, alert.fired_at, alert.resolved_at) == (AlertState.RESOLVED, None, at(30))


def test_a_firing_alert_resolves_when_the_condition_stops(rule: Any) -> None:
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=at(60))

    alert = services.alert_observe(rule=rule, series=SERIES, value=80.0, now=at(120))

    assert Alert.objects.get(pk=alert.pk).state == AlertState.RESOLVED


def test_a_new_breach_after_resolving_is_a_new_alert(rule: Any) -> None:
    first = services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)
    services.alert_observe(rule=rule, series=SERIES, value=80.0, now=at(30))

    second = services.alert_observe(rule=rule, series=SERIES, value=90.0, now=at(90))

    assert second.pk != first.pk
    assert second.state == AlertState.PENDING


def test_each_series_gets_its_own_alert(rule: Any) -> None:
    services.alert_observe(rule=rule, series={"node": "gpu-01"}, value=90.0, now=T0)
    services.alert_observe(rule=rule, series={"node": "gpu-02"}, value=90.0, now=T0)

    assert Alert.objects.count() == 2


def test_a_firing_alert_keeps_firing_when_the_rules_duration_is_raised(rule: Any) -> None:
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=at(60))
    rule.for_seconds = 3600

    alert = services.alert_observe(rule=rule, series=SERIES, value=90.0, now=at(120))

    assert alert.state == AlertState.FIRING


def test_a_rule_without_a_duration_fires_on_the_first_breach() -> None:
    rule = AlertRuleFactory(for_seconds=0)

    alert = services.alert_observe(rule=rule, series=SERIES, value=99.0, now=T0)

    assert (alert.state, alert.fired_at) == (AlertState.FIRING, T0)


def test_series_the_rules_matchers_exclude_are_ignored() -> None:
    rule = AlertRuleFactory(for_seconds=0, matchers=[{"label": "node", "op": "=~", "value": "cpu-.*"}])

    assert services.alert_observe(rule=rule, series=SERIES, value=99.0, now=T0) is None


def test_disabling_a_rule_resolves_its_open_alerts(rule: Any) -> None:
    services.alert_observe(rule=rule, series=SERIES, value=90.0, now=T0)
    rule.enabled = False

    alert = services.alert_observe(rule=rule, series=SERIES, value=99.0, now=at(10))

    assert alert.state == AlertState.RESOLVED


def test_acknowledging_records_who_and_when(make_user: Callable[..., Any]) -> None:
    person = make_user(Role.OPERATOR, "ada")
    alert = AlertFactory()

    alert = services.alert_acknowledge(alert=alert, user=person)

    assert (alert.acknowledged_by, alert.acknowledged_at is not None) == (person, True)


def test_acknowledging_twice_keeps_the_first(make_user: Callable[..., Any]) -> None:
    first, second = make_user(Role.OPERATOR, "ada"), make_user(Role.OPERATOR, "bob")
    alert = AlertFactory()
    services.alert_acknowledge(alert=alert, user=first)

    alert = services.alert_acknowledge(alert=alert, user=second)

    assert alert.acknowledged_by == first


def test_acknowledging_a_resolved_alert_is_a_conflict(make_user: Callable[..., Any]) -> None:
    alert = AlertFactory(state=AlertState.RESOLVED)

    with pytest.raises(services.Conflict):
        services.alert_acknowledge(alert=alert, user=make_user(Role.OPERATOR))


def test_a_silence_starts_now_unless_told_otherwise() -> None:
    before = timezone.now()

    silence = services.silence_create(
        created_by=None,
        matchers=[{"label": "node", "op": "=", "value": "gpu-01"}],
        ends_at=before + dt.timedelta(hours=1),
        comment="swap fans",
    )

    assert before <= silence.starts_at <= timezone.now()


def test_a_silence_with_a_bad_regex_names_the_matchers_field() -> None:
    with pytest.raises(ValidationError) as caught:
        services.silence_create(
            created_by=None,
            matchers=[{"label": "node", "op": "=~", "value": "gpu-("}],
            ends_at=timezone.now() + dt.timedelta(hours=1),
            comment="x",
        )

    assert list(caught.value.message_dict) == ["matchers"]


def test_a_silence_must_end_after_it_starts() -> None:
    now = timezone.now()

    with pytest.raises(ValidationError) as caught:
        services.silence_create(
            created_by=None,
            matchers=[{"label": "node", "op": "=", "value": "gpu-01"}],
            starts_at=now + dt.timedelta(hours=2),
            ends_at=now + dt.timedelta(hours=1),
            comment="x",
        )

    assert caught.value.message_dict == {"ends_at": ["must be after starts_at"]}


def test_a_silence_must_end_in_the_future() -> None:
    now = timezone.now()

    with pytest.raises(ValidationError) as caught:
        services.silence_create(
            created_by=None,
            matchers=[{"label": "node", "op": "=", "value": "gpu-01"}],
            starts_at=now - dt.timedelta(hours=2),
            ends_at=now - dt.timedelta(hours=1),
            comment="x",
        )

    assert caught.value.message_dict == {"ends_at": ["must be in the future"]}


def test_a_silence_needs_a_comment() -> None:
    with pytest.raises(ValidationError) as caught:
        services.silence_create(
            created_by=None,
            matchers=[{"label": "node", "op": "=", "value": "gpu-01"}],
            ends_at=timezone.now() + dt.timedelta(hours=1),
            comment="",
        )

    assert list(caught.value.message_dict) == ["comment"]


def test_updating_a_silence_validates_the_result() -> None:
    silence = SilenceFactory()

    with pytest.raises(ValidationError) as caught:
        services.silence_update(silence=silence, matchers=[{"label": "node", "op": "=~", "value": "["}])

    assert list(caught.value.message_dict) == ["matchers"]


def test_updating_an_expired_silence_is_a_conflict() -> None:
    now = timezone.now()
    silence = SilenceFactory(starts_at=now - dt.timedelta(hours=2), ends_at=now - dt.timedelta(hours=1))

    with pytest.raises(services.Conflict):
        services.silence_update(silence=silence, comment="again")


def test_expiring_an_active_silence_ends_it_now() -> None:
    silence = SilenceFactory()

    services.silence_expire(silence=silence)

    assert Silence.objects.get(pk=silence.pk).status == "expired"


def test_expiring_a_pending_silence_ends_it_before_it_starts() -> None:
    now = timezone.now()
    silence = SilenceFactory(starts_at=now + dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=2))

    services.silence_expire(silence=silence)

    silence.refresh_from_db()
    assert silence.starts_at == silence.ends_at <= timezone.now()


def test_expiring_an_expired_silence_is_a_conflict() -> None:
    now = timezone.now()
    silence = SilenceFactory(starts_at=now - dt.timedelta(hours=2), ends_at=now - dt.timedelta(hours=1))

    with pytest.raises(services.Conflict):
        services.silence_expire(silence=silence)
