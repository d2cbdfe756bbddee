"""Notification groups and when they are due (pure, Alertmanager's rules)."""

from __future__ import annotations

import datetime as dt

from apps.alerts.domain.grouping import FIRING, RESOLVED, GroupAlert, GroupState, Timing, plan, split

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
    rest = plan([alert("a", RESOLVED), alert("b")], state, quiet, at(330))
    assert rest.due
    assert [a.fingerprint for a in rest.alerts] == ["b"]


def test_a_resolved_alert_never_told_as_firing_is_not_told() -> None:
    assert plan([alert("a", RESOLVED)], None, TIMING, at(100)).drop
