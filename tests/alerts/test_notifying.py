"""notifying.notify over real rows: which alerts a channel hears of, how they are grouped, and when
each group is due (group_wait, group_interval, repeat_interval), as a user of Alertmanager expects.

Time moves by passing `now`; the alerts are rows made by the factories, muted by real silences and
inhibit rules (evaluating.mutes_refresh sets the flags, as the beat does)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.alerts import delivering, notifying, raising
from apps.alerts.domain.delivery import DeliveryStatus
from apps.alerts.domain.events import EventKind
from apps.alerts.domain.states import AlertState
from apps.alerts.domain.webhook import ZERO_TIME, rfc3339
from apps.alerts.evaluating import mutes_refresh
from apps.alerts.models import Alert, AlertRule, Delivery, NotificationChannel, NotificationGroup
from apps.alerts.senders import Outcome
from apps.core.models import OutboxMessage
from tests.alerts.factories import (
    AlertFactory,
    AlertRuleFactory,
    InhibitRuleFactory,
    NotificationChannelFactory,
    SilenceFactory,
)
from tests.alerts.receiver import receiver

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://moc.example.com"


@pytest.fixture
def t0() -> dt.datetime:
    return timezone.now()


def _at(t0: dt.datetime, seconds: float) -> dt.datetime:
    return t0 + dt.timedelta(seconds=seconds)


def _channel(**fields: Any) -> NotificationChannel:
    return NotificationChannelFactory(**fields)


def _rule(*channels: NotificationChannel, **fields: Any) -> AlertRule:
    rule = AlertRuleFactory(**fields)
    rule.channels.add(*channels)
    return rule


def _firing(rule: AlertRule, **series: str) -> Alert:
    return AlertFactory(rule=rule, series=series or {"node": "gpu-01"}, annotations={"summary": "hot"})


def _resolve(alert: Alert, at: dt.datetime) -> None:
    Alert.objects.filter(pk=alert.pk).update(state=AlertState.RESOLVED, resolved_at=at)


def _deliveries(channel: NotificationChannel) -> list[Delivery]:
    return list(Delivery.objects.filter(channel=channel).order_by("id"))


def _payload(delivery: Delivery) -> dict[str, Any]:
    return json.loads(delivery.body)


def _told(delivery: Delivery) -> dict[str, str]:
    """fingerprint -> status, as the delivery's body tells them."""
    return {a["fingerprint"]: a["status"] for a in _payload(delivery)["alerts"]}


# (1) group_wait, and the Alertmanager v4 body that reaches a real receiver


@override_settings(MOC_PUBLIC_URL=PUBLIC_URL)
def test_a_firing_alert_is_notified_once_group_wait_passed_in_the_alertmanager_shape(t0: dt.datetime) -> None:
    with receiver() as hook:
        channel = _channel(config={"url": hook.url + "/hook"}, group_wait_s=30)
        rule = _rule(channel)
        alert = _firing(rule, node="gpu-01")

        assert notifying.notify(now=t0) == 0
        assert notifying.notify(now=_at(t0, 29)) == 0
        assert _deliveries(channel) == []

        assert notifying.notify(now=_at(t0, 30)) == 1
        [delivery] = _deliveries(channel)
        # The send is queued with the round (the outbox), for the task to pick up once it commits.
        assert OutboxMessage.objects.filter(task_name=notifying.DELIVERY_SEND, args=[delivery.pk]).exists()

        sent = delivering.delivery_attempt(delivery.pk)

    assert (delivery.status, delivery.firing, delivery.resolved) == (DeliveryStatus.PENDING, 1, 0)
    assert delivery.fingerprints == [alert.fingerprint]
    assert sent.status == DeliveryStatus.DELIVERED
    [request] = hook.requests
    assert request.path == "/hook"
    assert request.body == delivery.body.encode()
    payload = json.loads(request.body)
    assert {k: payload[k] for k in ("version", "status", "receiver", "truncatedAlerts")} == {
        "version": "4",
        "status": "firing",
        "receiver": channel.name,
        "truncatedAlerts": 0,
    }
    assert payload["groupLabels"] == {"alertname": rule.name}
    assert payload["groupKey"] == '{}:{alertname="' + rule.name + '"}'
    assert payload["commonLabels"] == alert.labels
    assert payload["commonAnnotations"] == {"summary": "hot"}
    assert payload["externalURL"] == PUBLIC_URL
    assert payload["alerts"] == [
        {
            "status": "firing",
            "labels": alert.labels,
            "annotations": {"summary": "hot"},
            "startsAt": rfc3339(alert.fired_at),
            "endsAt": ZERO_TIME,
            "generatorURL": f"{PUBLIC_URL}/alerts/{alert.pk}/",
            "fingerprint": alert.fingerprint,
        }
    ]


def test_a_notified_group_is_not_notified_again_in_the_next_rounds(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=30)
    _firing(_rule(channel))

    notifying.notify(now=t0)
    assert notifying.notify(now=_at(t0, 30)) == 1
    assert [notifying.notify(now=_at(t0, s)) for s in (31, 60, 330, 3600)] == [0, 0, 0, 0]
    assert len(_deliveries(channel)) == 1


def test_an_alert_without_annotations_is_told_with_its_rules_summary(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0)
    rule = _rule(channel, summary="{{ labels.node }} is hot")
    AlertFactory(rule=rule, series={"node": "gpu-09"}, annotations={})

    assert notifying.notify(now=t0) == 1
    [delivery] = _deliveries(channel)
    assert _payload(delivery)["alerts"][0]["annotations"] == {"summary": "gpu-09 is hot"}


# (2) silenced, inhibited and acknowledged alerts are not notified; an expired ack is


def test_silenced_inhibited_and_acknowledged_alerts_are_muted_an_expired_ack_is_not(
    t0: dt.datetime, admin_user: Any
) -> None:
    channel = _channel(group_by=["..."], group_wait_s=0)
    rule = _rule(channel)
    silenced = _firing(rule, node="gpu-01")
    SilenceFactory(matchers=[{"label": "node", "op": "=", "value": "gpu-01"}])
    # A node-down alert (routed nowhere) inhibits the device alerts of its node.
    InhibitRuleFactory()
    _firing(AlertRuleFactory(name="NodeDown"), node="gpu-02")
    inhibited = _firing(rule, node="gpu-02", device="0")
    acked = _firing(rule, node="gpu-03")
    acked_until_later = _firing(rule, node="gpu-04")
    ack_expired = _firing(rule, node="gpu-05")
    plain = _firing(rule, node="gpu-06")
    Alert.objects.filter(pk=acked.pk).update(acknowledged_by=admin_user, acknowledged_at=t0)
    Alert.objects.filter(pk=acked_until_later.pk).update(
        acknowledged_by=admin_user, acknowledged_at=t0, ack_expires_at=_at(t0, 3600)
    )
    Alert.objects.filter(pk=ack_expired.pk).update(
        acknowledged_by=admin_user,
        acknowledged_at=_at(t0, -3600),
        ack_expires_at=_at(t0, -60),
    )
    mutes_refresh(now=t0)
    assert Alert.objects.get(pk=silenced.pk).silenced
    assert Alert.objects.get(pk=inhibited.pk).inhibited

    assert notifying.notify(now=t0) == 2

    told = {fp for d in _deliveries(channel) for fp in _told(d)}
    assert told == {ack_expired.fingerprint, plain.fingerprint}


def test_an_alert_acknowledged_after_it_was_notified_is_not_repeated(
    t0: dt.datetime, admin_user: Any
) -> None:
    channel = _channel(group_wait_s=0, repeat_interval_s=600)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1

    Alert.objects.filter(pk=alert.pk).update(acknowledged_by=admin_user, acknowledged_at=t0)

    assert notifying.notify(now=_at(t0, 600)) == 0
    assert notifying.notify(now=_at(t0, 6000)) == 0
    assert len(_deliveries(channel)) == 1


def test_an_ack_that_expired_by_the_rounds_now_no_longer_mutes(t0: dt.datetime, admin_user: Any) -> None:
    channel = _channel(group_wait_s=0)
    alert = _firing(_rule(channel))
    Alert.objects.filter(pk=alert.pk).update(
        acknowledged_by=admin_user, acknowledged_at=t0, ack_expires_at=_at(t0, 600)
    )

    assert notifying.notify(now=_at(t0, 3600)) == 1


# (3) grouping by the channel's group_by labels


def test_alerts_with_the_same_group_labels_go_in_one_delivery(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0)  # group_by ["alertname"]
    rule = _rule(channel)
    first, second = _firing(rule, node="gpu-01"), _firing(rule, node="gpu-02")

    assert notifying.notify(now=t0) == 1

    [delivery] = _deliveries(channel)
    assert delivery.firing == 2
    assert set(delivery.fingerprints) == {first.fingerprint, second.fingerprint}
    payload = _payload(delivery)
    assert payload["groupLabels"] == {"alertname": rule.name}
    assert {a["labels"]["node"] for a in payload["alerts"]} == {"gpu-01", "gpu-02"}
    assert payload["commonLabels"] == {"alertname": rule.name, "severity": "warning"}


def test_alerts_with_different_group_labels_go_in_separate_deliveries(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0)  # group_by ["alertname"]
    hot, cold = _rule(channel), _rule(channel)
    a, b = _firing(hot), _firing(cold)

    assert notifying.notify(now=t0) == 2

    by_group = {_payload(d)["groupLabels"]["alertname"]: d.fingerprints for d in _deliveries(channel)}
    assert by_group == {hot.name: [a.fingerprint], cold.name: [b.fingerprint]}
    assert len({d.group_key for d in _deliveries(channel)}) == 2


def test_group_by_node_gathers_alerts_of_several_rules(t0: dt.datetime) -> None:
    channel = _channel(group_by=["node"], group_wait_s=0)
    hot, slow = _rule(channel), _rule(channel)
    on_one = {_firing(hot, node="gpu-01").fingerprint, _firing(slow, node="gpu-01").fingerprint}
    on_two = {_firing(hot, node="gpu-02").fingerprint}

    assert notifying.notify(now=t0) == 2

    by_node = {_payload(d)["groupLabels"]["node"]: set(d.fingerprints) for d in _deliveries(channel)}
    assert by_node == {"gpu-01": on_one, "gpu-02": on_two}


def test_an_empty_group_by_puts_all_alerts_in_one_group(t0: dt.datetime) -> None:
    channel = _channel(group_by=[], group_wait_s=0)
    _firing(_rule(channel), node="gpu-01")
    _firing(_rule(channel), node="gpu-02")

    assert notifying.notify(now=t0) == 1


# (4) group_interval for a changed group, repeat_interval for an unchanged one


def test_a_new_alert_joining_a_notified_group_waits_group_interval(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=30, group_interval_s=300, repeat_interval_s=3600)
    rule = _rule(channel)
    first = _firing(rule, node="gpu-01")
    notifying.notify(now=t0)
    assert notifying.notify(now=_at(t0, 30)) == 1

    second = _firing(rule, node="gpu-02")
    # Not group_wait again: the group exists; group_interval counts from its last notification.
    assert notifying.notify(now=_at(t0, 60)) == 0
    assert notifying.notify(now=_at(t0, 329)) == 0
    assert notifying.notify(now=_at(t0, 330)) == 1

    latest = _deliveries(channel)[-1]
    assert _told(latest) == {first.fingerprint: "firing", second.fingerprint: "firing"}
    # The change told, the group is unchanged again: next time is the repeat.
    assert notifying.notify(now=_at(t0, 630)) == 0


def test_an_alert_joining_before_the_first_notification_goes_in_it(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=30)
    rule = _rule(channel)
    first = _firing(rule, node="gpu-01")
    notifying.notify(now=t0)
    second = _firing(rule, node="gpu-02")
    assert notifying.notify(now=_at(t0, 10)) == 0

    assert notifying.notify(now=_at(t0, 30)) == 1

    [delivery] = _deliveries(channel)
    assert set(delivery.fingerprints) == {first.fingerprint, second.fingerprint}


def test_an_unchanged_firing_group_repeats_after_repeat_interval_and_not_before(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300, repeat_interval_s=3600)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1

    assert notifying.notify(now=_at(t0, 300)) == 0
    assert notifying.notify(now=_at(t0, 3599)) == 0
    assert notifying.notify(now=_at(t0, 3600)) == 1
    assert notifying.notify(now=_at(t0, 3600 + 3599)) == 0
    assert notifying.notify(now=_at(t0, 7200)) == 1

    deliveries = _deliveries(channel)
    assert [_told(d) for d in deliveries] == [{alert.fingerprint: "firing"}] * 3
    assert [d.body for d in deliveries[1:]] == [deliveries[0].body] * 2


# (5) send_resolved


@override_settings(MOC_PUBLIC_URL=PUBLIC_URL)
def test_a_resolved_alert_that_was_notified_is_told_resolved_once_then_the_group_is_dropped(
    t0: dt.datetime,
) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300, repeat_interval_s=3600, send_resolved=True)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1

    resolved_at = _at(t0, 60)
    _resolve(alert, resolved_at)
    assert notifying.notify(now=_at(t0, 60)) == 0  # a change: it waits group_interval
    assert notifying.notify(now=_at(t0, 300)) == 1

    told = _deliveries(channel)[-1]
    assert (told.firing, told.resolved, told.fingerprints) == (0, 1, [alert.fingerprint])
    payload = _payload(told)
    assert payload["status"] == "resolved"
    [sent] = payload["alerts"]
    assert (sent["status"], sent["endsAt"]) == ("resolved", rfc3339(resolved_at))

    assert notifying.notify(now=_at(t0, 600)) == 0
    assert not NotificationGroup.objects.filter(channel=channel).exists()
    assert [notifying.notify(now=_at(t0, s)) for s in (3900, 7200, 86400)] == [0, 0, 0]
    assert len(_deliveries(channel)) == 2


def test_a_resolved_alert_is_told_beside_those_still_firing(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300, repeat_interval_s=3600)
    rule = _rule(channel)
    stays, goes = _firing(rule, node="gpu-01"), _firing(rule, node="gpu-02")
    assert notifying.notify(now=t0) == 1

    _resolve(goes, _at(t0, 10))
    assert notifying.notify(now=_at(t0, 300)) == 1
    latest = _deliveries(channel)[-1]
    assert _told(latest) == {stays.fingerprint: "firing", goes.fingerprint: "resolved"}
    assert (latest.firing, latest.resolved, _payload(latest)["status"]) == (1, 1, "firing")

    # Told once: afterwards the group is unchanged (only the repeat, without the resolved one,
    # once the notification that told it was delivered).
    assert notifying.notify(now=_at(t0, 600)) == 0
    Delivery.objects.filter(channel=channel).update(status=DeliveryStatus.DELIVERED)
    assert notifying.notify(now=_at(t0, 300 + 3600)) == 1
    assert _told(_deliveries(channel)[-1]) == {stays.fingerprint: "firing"}


def test_without_send_resolved_a_resolution_is_not_told_and_the_group_is_dropped(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300, send_resolved=False)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1

    _resolve(alert, _at(t0, 60))

    assert [notifying.notify(now=_at(t0, s)) for s in (60, 300, 600, 86400)] == [0, 0, 0, 0]
    assert len(_deliveries(channel)) == 1
    assert not NotificationGroup.objects.filter(channel=channel).exists()


def test_an_alert_that_resolved_before_it_was_ever_notified_is_not_told(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=30, send_resolved=True)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 0

    _resolve(alert, _at(t0, 10))

    assert [notifying.notify(now=_at(t0, s)) for s in (30, 300, 3600)] == [0, 0, 0]
    assert _deliveries(channel) == []


# (6) routing: disabled channels, rules without the channel


def test_a_disabled_channel_gets_nothing(t0: dt.datetime) -> None:
    channel = _channel(enabled=False, group_wait_s=0)
    _firing(_rule(channel))

    assert [notifying.notify(now=_at(t0, s)) for s in (0, 30, 86400)] == [0, 0, 0]
    assert _deliveries(channel) == []
    assert not NotificationGroup.objects.filter(channel=channel).exists()


def test_a_channel_hears_only_of_the_rules_that_list_it(t0: dt.datetime) -> None:
    listed, other = _channel(group_wait_s=0), _channel(group_wait_s=0)
    routed = _firing(_rule(listed))
    _firing(_rule())  # a rule with no channel at all

    assert notifying.notify(now=t0) == 1

    assert [d.fingerprints for d in _deliveries(listed)] == [[routed.fingerprint]]
    assert _deliveries(other) == []


def test_a_rule_listing_two_channels_notifies_both(t0: dt.datetime) -> None:
    one, two = _channel(group_wait_s=0), _channel(group_wait_s=0)
    alert = _firing(_rule(one, two))

    assert notifying.notify(now=t0) == 2

    assert [d.fingerprints for d in _deliveries(one)] == [[alert.fingerprint]]
    assert [d.fingerprints for d in _deliveries(two)] == [[alert.fingerprint]]


# (7) group_by ["..."]: each alert alone


def test_group_by_each_gives_one_delivery_per_alert(t0: dt.datetime) -> None:
    channel = _channel(group_by=["..."], group_wait_s=0)
    rule = _rule(channel)
    alerts = [_firing(rule, node=f"gpu-0{i}") for i in (1, 2, 3)]

    assert notifying.notify(now=t0) == 3

    deliveries = _deliveries(channel)
    assert sorted(d.fingerprints[0] for d in deliveries) == sorted(a.fingerprint for a in alerts)
    assert all(len(d.fingerprints) == 1 for d in deliveries)
    for delivery in deliveries:
        [sent] = _payload(delivery)["alerts"]
        assert _payload(delivery)["groupLabels"] == sent["labels"]
    assert len({d.group_key for d in deliveries}) == 3


# (8) event alerts are told at least once (review 16a #1)


def _job_failed_rule(channel: NotificationChannel) -> AlertRule:
    return _rule(
        channel,
        name="JobFailed",
        kind="event",
        event=EventKind.JOB_FAILED.value,
        metric="",
        threshold=None,
        for_seconds=0,
    )


def _rounds(t0: dt.datetime, seconds: range, events: dict[int, str]) -> None:
    """Beat's rounds every 15 s from t0 (event alerts resolved, then notify, then the deliveries
    sent); a job fails at each second named in `events`."""
    for s in seconds:
        if s in events:
            raising.event_raise(
                event=EventKind.JOB_FAILED, labels={"job": events[s], "kind": "train"}, now=_at(t0, s)
            )
        raising.event_alerts_resolve(now=_at(t0, s))
        mutes_refresh(now=_at(t0, s))
        notifying.notify(now=_at(t0, s))
        for pk in Delivery.objects.filter(status=DeliveryStatus.PENDING).values_list("pk", flat=True):
            assert delivering.delivery_attempt(pk).status == DeliveryStatus.DELIVERED


def _jobs_told(channel: NotificationChannel) -> list[dict[str, str]]:
    """Per delivery: job -> status as told."""
    return [{a["labels"]["job"]: a["status"] for a in _payload(d)["alerts"]} for d in _deliveries(channel)]


def test_two_job_failures_two_minutes_apart_are_both_notified(t0: dt.datetime) -> None:
    with receiver() as hook:
        channel = _channel(config={"url": hook.url})  # group_wait 30, group_interval 300: the defaults
        _job_failed_rule(channel)

        _rounds(t0, range(0, 1200, 15), {0: "1", 120: "2"})

    told = _jobs_told(channel)
    assert [t for t in told if t.get("2") == "firing"], told
    assert [t for t in told if t.get("1") == "firing"], told
    # The second joined the notified group: told group_wait after it fired, not group_interval.
    assert told == [{"1": "firing"}, {"2": "firing", "1": "resolved"}, {"2": "resolved"}]
    assert len(hook.requests) == 3


def test_with_a_long_group_wait_each_event_is_still_told(t0: dt.datetime) -> None:
    with receiver() as hook:
        channel = _channel(config={"url": hook.url}, group_wait_s=120)
        _job_failed_rule(channel)

        _rounds(t0, range(0, 1200, 15), {0: "1", 300: "2"})

    told = _jobs_told(channel)
    # Each resolved (60 s) before its group_wait passed: told once, as resolved with its start.
    assert told == [{"1": "resolved"}, {"2": "resolved"}]
    [first] = _payload(_deliveries(channel)[0])["alerts"]
    assert first["startsAt"] == rfc3339(_at(t0, 0))


def test_an_event_that_resolved_while_rounds_were_skipped_is_told(t0: dt.datetime) -> None:
    with receiver() as hook:
        channel = _channel(config={"url": hook.url}, group_wait_s=0)
        _job_failed_rule(channel)
        raising.event_raise(event=EventKind.JOB_FAILED, labels={"job": "7", "kind": "train"}, now=t0)

        # No round ran until the alert resolved (the lock was held): that round still tells it.
        _rounds(t0, range(90, 300, 15), {})

    assert _jobs_told(channel) == [{"7": "resolved"}]


# (9) muted, vanished (review 16a #6) and a round that fails (#8)


def test_an_acknowledged_alert_told_firing_is_told_resolved(t0: dt.datetime, admin_user: Any) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1
    Alert.objects.filter(pk=alert.pk).update(acknowledged_by=admin_user, acknowledged_at=t0)
    assert notifying.notify(now=_at(t0, 600)) == 0  # acknowledging is no change, no repeat

    _resolve(alert, _at(t0, 900))

    assert notifying.notify(now=_at(t0, 900)) == 1
    assert _told(_deliveries(channel)[-1]) == {alert.fingerprint: "resolved"}


def test_an_acknowledgement_is_not_a_change_that_resends_the_group(t0: dt.datetime, admin_user: Any) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300, repeat_interval_s=3600)
    rule = _rule(channel)
    acked, _other = _firing(rule, node="gpu-01"), _firing(rule, node="gpu-02")
    assert notifying.notify(now=t0) == 1

    Alert.objects.filter(pk=acked.pk).update(acknowledged_by=admin_user, acknowledged_at=t0)

    assert [notifying.notify(now=_at(t0, s)) for s in (300, 600, 3000)] == [0, 0, 0]


@override_settings(MOC_PUBLIC_URL=PUBLIC_URL)
def test_alerts_of_a_deleted_rule_are_told_resolved_from_what_the_group_remembers(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300)
    rule = _rule(channel)
    alert = _firing(rule)
    assert notifying.notify(now=t0) == 1
    rule.delete()

    assert notifying.notify(now=_at(t0, 300)) == 1

    [told] = _payload(_deliveries(channel)[-1])["alerts"]
    assert (told["status"], told["labels"], told["fingerprint"]) == (
        "resolved",
        alert.labels,
        alert.fingerprint,
    )
    assert told["startsAt"] == rfc3339(alert.fired_at)
    assert told["endsAt"] == rfc3339(_at(t0, 300))
    assert told["annotations"] == {"summary": "hot"}
    assert notifying.notify(now=_at(t0, 600)) == 0
    assert not NotificationGroup.objects.filter(channel=channel).exists()


def test_alerts_of_a_rule_the_channel_was_taken_off_are_told_resolved(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300)
    rule = _rule(channel)
    alert = _firing(rule)
    assert notifying.notify(now=t0) == 1
    rule.channels.remove(channel)

    assert notifying.notify(now=_at(t0, 300)) == 1
    assert _told(_deliveries(channel)[-1]) == {alert.fingerprint: "resolved"}


def test_a_group_remembered_in_the_older_shape_is_still_read(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1
    NotificationGroup.objects.filter(channel=channel).update(sent={alert.fingerprint: "firing"})

    _resolve(alert, _at(t0, 60))

    assert notifying.notify(now=_at(t0, 300)) == 1
    assert _told(_deliveries(channel)[-1]) == {alert.fingerprint: "resolved"}


def test_a_channel_whose_round_fails_does_not_stop_the_others(t0: dt.datetime) -> None:
    broken, fine = _channel(group_wait_s=0), _channel(group_wait_s=0)
    _firing(_rule(broken, fine))
    NotificationChannel.objects.filter(pk=broken.pk).update(group_by=5)  # bad data, past validation

    assert notifying.notify(now=t0) == 1
    assert _deliveries(broken) == []
    assert len(_deliveries(fine)) == 1


# (10) deliveries: superseded, failed (review 16a #3, #5)


def test_a_newer_delivery_of_a_group_supersedes_the_pending_one_and_tells_its_resolutions(
    t0: dt.datetime,
) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=300)
    rule = _rule(channel)
    goes = _firing(rule, node="gpu-01")
    assert notifying.notify(now=t0) == 1
    _resolve(goes, _at(t0, 10))
    assert notifying.notify(now=_at(t0, 300)) == 1  # tells it resolved; never sent (receiver down)
    comes = _firing(rule, node="gpu-02")

    assert notifying.notify(now=_at(t0, 600)) == 1

    first, second, third = _deliveries(channel)
    assert (first.status, first.error) == (DeliveryStatus.FAILED, f"superseded by delivery {second.pk}")
    assert (second.status, second.error) == (DeliveryStatus.FAILED, f"superseded by delivery {third.pk}")
    assert third.status == DeliveryStatus.PENDING
    assert _told(third) == {comes.fingerprint: "firing", goes.fingerprint: "resolved"}
    with receiver() as hook:
        Delivery.objects.filter(channel=channel).update(channel=_channel(config={"url": hook.url}))
        assert delivering.delivery_attempt(second.pk).status == DeliveryStatus.FAILED
    assert hook.requests == []


def test_a_delivery_being_sent_is_not_superseded_and_a_retry_waiting_is(t0: dt.datetime) -> None:
    channel = _channel(group_wait_s=0, group_interval_s=10)
    rule = _rule(channel)
    _firing(rule, node="gpu-01")
    assert notifying.notify(now=t0) == 1
    [sending] = _deliveries(channel)
    assert delivering._claim(sending, t0)  # a worker took it and is posting it now
    sending.attempts += 1

    _firing(rule, node="gpu-02")
    assert notifying.notify(now=_at(t0, 15)) == 1
    delivering._record(sending, Outcome(ok=True, status=200), now=_at(t0, 16))  # the receiver got it

    sending.refresh_from_db()
    assert (sending.status, sending.error) == (DeliveryStatus.DELIVERED, "")
    # The newer one, claimed in its turn, fails once and waits for its retry: a newer one supersedes it.
    waiting = _deliveries(channel)[-1]
    assert delivering._claim(waiting, _at(t0, 16))
    waiting.attempts += 1
    delivering._record(waiting, Outcome(ok=False, error="HTTP 503: busy"), now=_at(t0, 17))
    _firing(rule, node="gpu-03")
    assert notifying.notify(now=_at(t0, 30)) == 1
    waiting.refresh_from_db()
    assert (waiting.status, waiting.error) == (
        DeliveryStatus.FAILED,
        f"superseded by delivery {_deliveries(channel)[-1].pk}",
    )


@override_settings(MOC_ALERT_DELIVERY_ATTEMPTS=1)
def test_a_delivery_that_failed_is_told_again_next_round(t0: dt.datetime) -> None:
    with receiver() as hook:
        url = hook.url  # closed once the receiver stops
    channel = _channel(config={"url": url}, group_wait_s=0, group_interval_s=300, repeat_interval_s=3600)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1
    [failed] = _deliveries(channel)
    assert delivering.delivery_attempt(failed.pk).status == DeliveryStatus.FAILED

    assert notifying.notify(now=_at(t0, 15)) == 1  # not after repeat_interval
    assert _told(_deliveries(channel)[-1]) == {alert.fingerprint: "firing"}


@override_settings(MOC_ALERT_DELIVERY_ATTEMPTS=1)
def test_a_resolution_whose_delivery_failed_is_told_again(t0: dt.datetime) -> None:
    with receiver() as hook:
        url = hook.url
    channel = _channel(config={"url": url}, group_wait_s=0, group_interval_s=300)
    alert = _firing(_rule(channel))
    assert notifying.notify(now=t0) == 1
    Delivery.objects.filter(channel=channel).update(status=DeliveryStatus.DELIVERED)
    _resolve(alert, _at(t0, 60))
    assert notifying.notify(now=_at(t0, 300)) == 1
    assert notifying.notify(now=_at(t0, 315)) == 0
    assert not NotificationGroup.objects.filter(channel=channel).exists()  # told: dropped

    assert delivering.delivery_attempt(_deliveries(channel)[-1].pk).status == DeliveryStatus.FAILED

    assert notifying.notify(now=_at(t0, 330)) == 1
    assert _told(_deliveries(channel)[-1]) == {alert.fingerprint: "resolved"}
