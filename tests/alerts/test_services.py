"""Writing alerts by people: acknowledging, silences (evaluation: test_evaluating.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.alerts import services, signals
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, Silence
from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, AlertRuleFactory, SilenceFactory

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)


def test_acknowledging_records_who_when_and_why(make_user: Callable[..., Any]) -> None:
    person = make_user(Role.OPERATOR, "ada")
    alert = AlertFactory()
    until = timezone.now() + dt.timedelta(hours=1)

    alert = services.alert_acknowledge(alert=alert, user=person, comment="on it", expires_at=until)

    assert (alert.acknowledged_by, alert.ack_comment, alert.ack_expires_at) == (person, "on it", until)
    assert alert.acknowledged is True


def test_acknowledging_again_replaces_who_the_comment_and_the_expiry(make_user: Callable[..., Any]) -> None:
    first, second = make_user(Role.OPERATOR, "ada"), make_user(Role.OPERATOR, "bob")
    alert = AlertFactory()
    services.alert_acknowledge(alert=alert, user=first, comment="looking", expires_at=timezone.now() + HOUR)

    alert = services.alert_acknowledge(alert=alert, user=second, comment="fan ordered")

    assert (alert.acknowledged_by, alert.ack_comment, alert.ack_expires_at) == (second, "fan ordered", None)


def test_an_acknowledgement_that_expired_no_longer_counts(make_user: Callable[..., Any]) -> None:
    alert = AlertFactory(
        acknowledged_at=timezone.now() - HOUR, ack_expires_at=timezone.now() - dt.timedelta(1)
    )

    assert alert.acknowledged is False


def test_acknowledging_until_a_past_time_names_the_expires_at_field(make_user: Callable[..., Any]) -> None:
    alert = AlertFactory()

    with pytest.raises(ValidationError) as caught:
        services.alert_acknowledge(
            alert=alert, user=make_user(Role.OPERATOR), expires_at=timezone.now() - HOUR
        )

    assert list(caught.value.message_dict) == ["expires_at"]


def test_acknowledging_a_resolved_alert_is_a_conflict(make_user: Callable[..., Any]) -> None:
    alert = AlertFactory(state=AlertState.RESOLVED)

    with pytest.raises(services.Conflict):
        services.alert_acknowledge(alert=alert, user=make_user(Role.OPERATOR))


def test_unacknowledging_clears_the_acknowledgement(make_user: Callable[..., Any]) -> None:
    person = make_user(Role.OPERATOR)
    alert = services.alert_acknowledge(
        alert=AlertFactory(), user=person, comment="x", expires_at=timezone.now() + HOUR
    )

    alert = services.alert_unacknowledge(alert=alert, user=person)

    assert (alert.acknowledged_by, alert.acknowledged_at, alert.ack_comment, alert.ack_expires_at) == (
        None,
        None,
        "",
        None,
    )


def test_unacknowledging_a_resolved_alert_is_a_conflict(make_user: Callable[..., Any]) -> None:
    alert = AlertFactory(state=AlertState.RESOLVED, acknowledged_at=timezone.now())

    with pytest.raises(services.Conflict):
        services.alert_unacknowledge(alert=alert, user=make_user(Role.OPERATOR))


def test_every_acknowledgement_change_tells_the_live_view(make_user: Callable[..., Any]) -> None:
    person = make_user(Role.OPERATOR)
    alert = AlertFactory()
    heard: list[tuple[int, str]] = []

    def listen(sender: Any, alert: Alert, **kwargs: Any) -> None:
        heard.append((alert.pk, alert.ack_comment))

    signals.alert_changed.connect(listen)
    try:
        services.alert_acknowledge(alert=alert, user=person, comment="on it")
        services.alert_unacknowledge(alert=alert, user=person)
        services.alert_unacknowledge(alert=alert, user=person)  # nothing left to take back
    finally:
        signals.alert_changed.disconnect(listen)

    assert heard == [(alert.pk, "on it"), (alert.pk, "")]


def test_a_silence_from_an_alert_matches_its_labels_but_severity() -> None:
    alert = AlertFactory(rule=AlertRuleFactory(name="GpuHot"), series={"node": "gpu-01", "gpu": "0"})

    silence = services.silence_from_alert(
        alert=alert, user=None, ends_at=timezone.now() + HOUR, comment="fan"
    )

    assert silence.matchers == [
        {"label": "alertname", "op": "=", "value": "GpuHot"},
        {"label": "gpu", "op": "=", "value": "0"},
        {"label": "node", "op": "=", "value": "gpu-01"},
    ]
    assert (silence.alert, silence.expire_on_resolve) == (alert, True)


def test_a_silence_from_an_alert_marks_it_silenced_and_tells_the_live_view() -> None:
    alert = AlertFactory(series={"node": "gpu-01"})
    other = AlertFactory(series={"node": "gpu-02"})
    heard: list[int] = []

    def listen(sender: Any, alert: Alert, **kwargs: Any) -> None:
        heard.append(alert.pk)

    signals.alert_changed.connect(listen)
    try:
        services.silence_from_alert(alert=alert, user=None, ends_at=timezone.now() + HOUR, comment="fan")
    finally:
        signals.alert_changed.disconnect(listen)

    alert.refresh_from_db()
    other.refresh_from_db()
    assert (alert.silenced, other.silenced, heard) == (True, False, [alert.pk])


def test_a_silence_that_ends_on_resolve_needs_its_alert() -> None:
    with pytest.raises(ValidationError) as caught:
        services.silence_create(
            created_by=None,
            matchers=[{"label": "node", "op": "=", "value": "gpu-01"}],
            ends_at=timezone.now() + HOUR,
            comment="x",
            expire_on_resolve=True,
        )

    assert list(caught.value.message_dict) == ["expire_on_resolve"]


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


def test_one_silence_end_serves_a_person_and_the_alert_resolving() -> None:
    """evaluating.silence_end is the one way a silence ends (services.silence_expire and the end of
    an expire-on-resolve silence call it): at `now`, a pending one as it starts, on the row and the
    object the caller holds."""
    now = timezone.now()
    pending = SilenceFactory(starts_at=now + HOUR, ends_at=now + 2 * HOUR)
    active = SilenceFactory()

    for silence in (pending, active):
        assert services.evaluating.silence_end(silence=silence, now=now) is silence

    assert (pending.starts_at, pending.ends_at, active.ends_at) == (now, now, now)
    pending.refresh_from_db()
    active.refresh_from_db()
    assert (pending.starts_at, pending.ends_at, active.ends_at) == (now, now, now)
