"""Notification groups and when they are due (pure, Alertmanager's rules)."""

from __future__ import annotations

import datetime as dt

from apps.alerts.domain.grouping import (
    FIRING,
    PENDING,
    RESOLVED,
    GroupAlert,
    GroupState,
    Timing,
    plan,
    split,
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
TIMING = Timing(group_wait_s=30, group_interval_s=300, repeat_interval_s=3600)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def alert(fp: str, status: str = FIRING, **labels: str) -> GroupAlert:
    return GroupAlert(fp, {"alertname": "GpuHot", **labels}, status)


def test_alerts_split_by_the_group_by_labels() -> None:
    groups = split(
        [alert("a", node="n1"), alert("b", node="n1"), alert("c", node="n2")], ["alertname", "node"]
    )

    assert sorted(sorted(a.fingerprint for a in members) for _, members in groups.values()) == [
        ["a", "b"],
        ["c"],
    ]
    assert {"alertname": "GpuHot", "node": "n1"} in [labels for labels, _ in groups.values()]


def test_dots_put_each_alert_on_its_own() -> None:
    assert len(split([alert("a", node="n1"), alert("b", node="n1", device="1")], ["..."])) == 2


def test_a_new_group_waits_group_wait() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=None, sent={})

    assert not plan([alert("a")], state, TIMING, at(29)).due
    ready = plan([alert("a")], state, TIMING, at(30))
    assert ready.due
    assert ready.sent == {"a": FIRING}


def test_a_change_waits_group_interval_and_no_change_waits_repeat_interval() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=at(30), sent={"a": FIRING})

    assert not plan([alert("a"), alert("b")], state, TIMING, at(329)).due
    assert plan([alert("a"), alert("b")], state, TIMING, at(330)).due
    assert not plan([alert("a")], state, TIMING, at(330)).due
    assert plan([alert("a")], state, TIMING, at(3630)).due


def test_a_resolved_alert_is_told_once_then_the_group_is_dropped() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=at(30), sent={"a": FIRING})

    told = plan([alert("a", RESOLVED)], state, TIMING, at(330))
    assert told.due
    assert (told.firing, told.resolved) == (0, 1)
    assert told.sent == {"a": RESOLVED}

    after = GroupState(first_seen_at=T0, last_sent_at=at(330), sent=told.sent)
    assert plan([alert("a", RESOLVED)], after, TIMING, at(9999)).drop


def test_without_send_resolved_nothing_resolved_is_told() -> None:
    quiet = Timing(group_wait_s=30, group_interval_s=300, repeat_interval_s=3600, send_resolved=False)
    state = GroupState(first_seen_at=T0, last_sent_at=at(30), sent={"a": FIRING, "b": FIRING})

    assert plan([alert("a", RESOLVED)], state, quiet, at(330)).drop
    # A resolution not sent is no change, as Alertmanager: the rest waits for its repeat.
    assert not plan([alert("a", RESOLVED), alert("b")], state, quiet, at(330)).due
    rest = plan([alert("a", RESOLVED), alert("b")], state, quiet, at(3630))
    assert rest.due
    assert [a.fingerprint for a in rest.alerts] == ["b"]
    assert rest.sent == {"b": FIRING}


def test_a_resolved_alert_never_told_as_firing_is_not_told() -> None:
    assert plan([alert("a", RESOLVED)], None, TIMING, at(100)).drop


def event(fp: str, fired: float, status: str = FIRING) -> GroupAlert:
    return GroupAlert(fp, {"alertname": "JobFailed", "job": fp}, status, event_at=at(fired))


def test_an_event_joining_a_notified_group_waits_group_wait_not_group_interval() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=at(30), sent={"e1": RESOLVED})

    assert not plan([event("e2", fired=120)], state, TIMING, at(149)).due
    joined = plan([event("e2", fired=120)], state, TIMING, at(150))
    assert joined.due
    assert joined.sent == {"e2": FIRING}
    # A threshold alert joining waits group_interval, as before.
    assert not plan([alert("t")], state, TIMING, at(150)).due


def test_an_event_seen_but_not_yet_told_is_remembered_as_pending() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=None, sent={})

    waiting = plan([event("e1", fired=0)], state, TIMING, at(15))
    assert (waiting.due, waiting.drop, waiting.sent) == (False, False, {"e1": PENDING})


def test_an_event_that_resolved_before_it_was_told_is_told_once_as_resolved() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=None, sent={"e1": PENDING})
    gone = event("e1", fired=0, status=RESOLVED)

    assert not plan([gone], state, TIMING, at(29)).drop
    told = plan([gone], state, TIMING, at(30))
    assert told.due
    assert [(a.fingerprint, a.status) for a in told.alerts] == [("e1", RESOLVED)]
    assert told.sent == {"e1": RESOLVED}
    after = GroupState(first_seen_at=T0, last_sent_at=at(30), sent=told.sent)
    assert plan([gone], after, TIMING, at(60)).drop


def test_without_send_resolved_an_untold_event_is_told_as_firing() -> None:
    quiet = Timing(group_wait_s=30, group_interval_s=300, repeat_interval_s=3600, send_resolved=False)
    state = GroupState(first_seen_at=T0, last_sent_at=None, sent={"e1": PENDING})

    told = plan([event("e1", fired=0, status=RESOLVED)], state, quiet, at(30))
    assert [(a.fingerprint, a.status) for a in told.alerts] == [("e1", FIRING)]


def test_a_threshold_alert_that_resolved_untold_is_still_not_told() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=None, sent={})
    assert plan([alert("a", RESOLVED)], state, TIMING, at(30)).drop


def test_a_muted_alert_told_firing_is_kept_and_its_resolution_told() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=at(30), sent={"a": FIRING, "b": FIRING})
    muted_a = GroupAlert("a", {"alertname": "GpuHot"}, FIRING, muted=True)

    # Muting it is no change: nothing before the repeat, and the repeat leaves it out.
    assert not plan([muted_a, alert("b")], state, TIMING, at(330)).due
    repeat = plan([muted_a, alert("b")], state, TIMING, at(3630))
    assert [a.fingerprint for a in repeat.alerts] == ["b"]
    assert repeat.sent == {"a": FIRING, "b": FIRING}
    # Alone and muted, the group is kept (not dropped), with nothing to tell.
    alone = plan([muted_a], GroupState(T0, at(30), {"a": FIRING}), TIMING, at(9999))
    assert (alone.due, alone.drop) == (False, False)
    ended = plan([alert("a", RESOLVED)], GroupState(T0, at(30), {"a": FIRING}), TIMING, at(330))
    assert ended.due
    assert [(a.fingerprint, a.status) for a in ended.alerts] == [("a", RESOLVED)]


def test_resolutions_carried_by_a_pending_delivery_are_told_again_only_with_a_notification() -> None:
    state = GroupState(first_seen_at=T0, last_sent_at=at(30), sent={"a": RESOLVED, "b": FIRING})
    alerts = [alert("a", RESOLVED), alert("b")]

    assert not plan(alerts, state, TIMING, at(330), unconfirmed=frozenset({"a", "b"})).due
    repeat = plan(alerts, state, TIMING, at(3630), unconfirmed=frozenset({"a", "b"}))
    assert {a.fingerprint: a.status for a in repeat.alerts} == {"a": RESOLVED, "b": FIRING}
    assert plan([alert("a", RESOLVED)], state, TIMING, at(330), unconfirmed=frozenset({"a"})).drop
