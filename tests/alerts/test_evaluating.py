"""The evaluation beat over real samples: a simulated node's telemetry published to Redis as its agent
publishes it, read by sources.current as /metrics reads it, evaluated and written to the database."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from apps.alerts import evaluating, signals, tasks
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, AlertRule, Delivery, InhibitRule, Silence
from apps.core.redis_clients import redis_client
from apps.fleet import telemetry
from apps.fleet.domain.kinds import Backend
from apps.fleet.models import Device, Node
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory, SilenceFactory
from tests.fleet.factories import DeviceFactory, NodeFactory

pytestmark = pytest.mark.django_db

TEMP = "DCGM_FI_DEV_GPU_TEMP"


def simulated_node(name: str = "simbox", gpus: int = 2) -> list[Device]:
    node = NodeFactory(name=name, backend=Backend.SIM)
    return [
        DeviceFactory(node=node, index=i, simulated=True, name="Simulated GPU 24 GiB", uuid=f"SIM-{name}-{i}")
        for i in range(gpus)
    ]


def report(devices: list[Device], temperatures: list[float]) -> None:
    """The node's telemetry message as its agent publishes it (apps.fleet.agent.Agent.publish)."""
    node: Node = devices[0].node
    message = telemetry.telemetry_message(
        node=node.name,
        node_id=node.pk,
        at=time.time(),
        backend=Backend.SIM.value,
        devices=[
            {
                "id": d.pk,
                "index": d.index,
                "uuid": d.uuid,
                "name": d.name,
                "kind": d.kind,
                "simulated": True,
                "health": d.health,
                "error": "",
                "gpu_util": 90.0,
                "mem_total_bytes": 24 * 1024**3,
                "mem_used_bytes": 1024**3,
                "temperature_c": temperature,
                "power_w": 200.0,
            }
            for d, temperature in zip(devices, temperatures, strict=True)
        ],
    )
    telemetry.publish(redis_client(), message)


@pytest.fixture
def gpus() -> list[Device]:
    return simulated_node()


@pytest.fixture
def t0() -> dt.datetime:
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def heard() -> Iterator[list[tuple[int, str, bool, bool]]]:
    """Every alert_changed sent: (alert id, state, silenced, inhibited)."""
    sent: list[tuple[int, str, bool, bool]] = []

    def receive(sender: Any, alert: Alert, **kwargs: Any) -> None:
        sent.append((alert.pk, alert.state, alert.silenced, alert.inhibited))

    signals.alert_changed.connect(receive, weak=False)
    yield sent
    signals.alert_changed.disconnect(receive)


def hot_rule(**fields: Any) -> AlertRule:
    defaults: dict[str, Any] = {
        "name": "GpuHot",
        "metric": TEMP,
        "op": ">",
        "threshold": 85.0,
        "for_seconds": 60,
    }
    return AlertRuleFactory(**{**defaults, **fields})


def later(t0: dt.datetime, seconds: float) -> dt.datetime:
    return t0 + dt.timedelta(seconds=seconds)


def test_a_hot_gpu_goes_pending_then_firing_then_resolved(
    gpus: list[Device], t0: dt.datetime, heard: list
) -> None:
    rule = hot_rule(summary="{{ labels.node }} GPU {{ labels.gpu }} at {{ value }} °C")
    report(gpus, [90.0, 40.0])

    assert evaluating.rules_evaluate(now=t0) == 1
    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.started_at, alert.fired_at, alert.value) == (
        AlertState.PENDING,
        t0,
        None,
        90.0,
    )
    assert alert.labels == {
        "node": "simbox",
        "gpu": "0",
        "device": "gpu0",
        "uuid": "SIM-simbox-0",
        "model_name": "Simulated GPU 24 GiB",
        "simulated": "true",
        "alertname": "GpuHot",
        "severity": "warning",
    }
    assert alert.annotations == {"summary": "simbox GPU 0 at 90 °C"}

    report(gpus, [93.0, 40.0])
    assert evaluating.rules_evaluate(now=later(t0, 30)) == 0  # a new value, no move
    report(gpus, [92.0, 40.0])
    assert evaluating.rules_evaluate(now=later(t0, 60)) == 1
    alert.refresh_from_db()
    assert (alert.state, alert.fired_at, alert.fired_value, alert.peak_value) == (
        AlertState.FIRING,
        later(t0, 60),
        92.0,
        93.0,
    )
    assert alert.annotations == {"summary": "simbox GPU 0 at 92 °C"}

    report(gpus, [70.0, 40.0])
    evaluating.rules_evaluate(now=later(t0, 75))
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_at, alert.value, alert.last_breach_at) == (
        AlertState.RESOLVED,
        later(t0, 75),
        70.0,
        later(t0, 60),
    )
    assert [state for pk, state, *_ in heard if pk == alert.pk] == ["pending", "firing", "resolved"]


def test_a_pending_alert_that_cools_down_resolves_without_firing(gpus: list[Device], t0: dt.datetime) -> None:
    rule = hot_rule()
    report(gpus, [90.0, 40.0])
    evaluating.rules_evaluate(now=t0)

    report(gpus, [80.0, 40.0])
    evaluating.rules_evaluate(now=later(t0, 30))

    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.fired_at) == (AlertState.RESOLVED, None)


def test_a_breach_after_resolving_opens_a_new_alert(gpus: list[Device], t0: dt.datetime) -> None:
    rule = hot_rule(for_seconds=0)
    for seconds, temperature in [(0, 90.0), (15, 80.0), (30, 91.0)]:
        report(gpus, [temperature, 40.0])
        evaluating.rules_evaluate(now=later(t0, seconds))

    assert list(Alert.objects.filter(rule=rule).order_by("started_at").values_list("state", flat=True)) == [
        AlertState.RESOLVED,
        AlertState.FIRING,
    ]


def test_keep_firing_holds_a_flapping_gpu_firing_then_resolves(gpus: list[Device], t0: dt.datetime) -> None:
    rule = hot_rule(for_seconds=0, keep_firing_seconds=60)
    states = []
    for seconds, temperature in [(0, 90.0), (15, 80.0), (30, 90.0), (45, 80.0), (75, 80.0), (90, 80.0)]:
        report(gpus, [temperature, 40.0])
        evaluating.rules_evaluate(now=later(t0, seconds))
        states.append(Alert.objects.get(rule=rule).state)

    assert states == ["firing"] * 5 + ["resolved"]
    assert Alert.objects.get(rule=rule).resolved_at == later(t0, 90)


def test_each_matching_device_is_its_own_alert_and_matchers_pick_them(
    gpus: list[Device], t0: dt.datetime
) -> None:
    every = hot_rule(name="AnyHot", for_seconds=0)
    second = hot_rule(name="SecondHot", for_seconds=0, matchers=[{"label": "gpu", "op": "=", "value": "1"}])
    report(gpus, [90.0, 95.0])

    evaluating.rules_evaluate(now=t0)

    assert sorted(a.labels["gpu"] for a in every.alerts.all()) == ["0", "1"]
    assert [a.labels["gpu"] for a in second.alerts.all()] == ["1"]


def test_a_node_that_stops_reporting_resolves_its_alerts(gpus: list[Device], t0: dt.datetime) -> None:
    rule = hot_rule(for_seconds=0)
    report(gpus, [90.0, 40.0])
    evaluating.rules_evaluate(now=t0)

    telemetry.forget(redis_client(), "simbox")  # as the offline sweep does
    evaluating.rules_evaluate(now=later(t0, 15))

    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.value) == (AlertState.RESOLVED, 90.0)  # the last value it had


def test_disabling_a_rule_resolves_its_open_alerts(gpus: list[Device], t0: dt.datetime, heard: list) -> None:
    rule = hot_rule(for_seconds=0)
    report(gpus, [90.0, 95.0])
    evaluating.rules_evaluate(now=t0)
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)

    assert evaluating.rules_evaluate(now=later(t0, 15)) == 2

    assert set(rule.alerts.values_list("state", flat=True)) == {AlertState.RESOLVED}
    assert sorted(state for _, state, *_ in heard) == ["firing", "firing", "resolved", "resolved"]


def test_a_rule_on_a_metric_the_catalogue_no_longer_has_resolves_its_alerts(
    gpus: list[Device], t0: dt.datetime
) -> None:
    rule = hot_rule(for_seconds=0)
    report(gpus, [90.0, 40.0])
    evaluating.rules_evaluate(now=t0)
    AlertRule.objects.filter(pk=rule.pk).update(metric="gpu_temperature_celsius")  # an old, made-up name

    evaluating.rules_evaluate(now=later(t0, 15))

    assert rule.alerts.get().state == AlertState.RESOLVED


def test_event_rules_and_their_alerts_are_left_alone(gpus: list[Device], t0: dt.datetime) -> None:
    event_rule = AlertRuleFactory(kind="event", event="job_failed", metric="", threshold=None)
    event_alert = AlertFactory(rule=event_rule, series={"job": "7", "event": "job_failed"})

    evaluating.rules_evaluate(now=t0)

    event_alert.refresh_from_db()
    assert event_alert.state == AlertState.FIRING


def test_a_silence_marks_the_alerts_it_matches_and_only_those(
    gpus: list[Device], t0: dt.datetime, heard: list
) -> None:
    hot_rule(for_seconds=0)
    SilenceFactory(matchers=[{"label": "gpu", "op": "=", "value": "1"}], starts_at=later(t0, -60))
    report(gpus, [90.0, 95.0])

    evaluating.rules_evaluate(now=t0)

    flags = {a.labels["gpu"]: a.silenced for a in Alert.objects.all()}
    assert flags == {"0": False, "1": True}
    assert sorted(heard) == [(a.pk, "firing", a.silenced, False) for a in Alert.objects.order_by("pk")]


def test_a_silence_that_ends_unmutes_its_alert(gpus: list[Device], t0: dt.datetime, heard: list) -> None:
    hot_rule(for_seconds=0)
    SilenceFactory(matchers=[{"label": "node", "op": "=", "value": "simbox"}], ends_at=later(t0, 60))
    report(gpus, [90.0, 40.0])
    evaluating.rules_evaluate(now=t0)
    alert = Alert.objects.get()
    assert alert.silenced

    evaluating.rules_evaluate(now=later(t0, 61))

    alert.refresh_from_db()
    assert not alert.silenced
    assert heard[-1] == (alert.pk, "firing", False, False)


def test_a_silence_made_to_end_with_its_alert_ends_when_it_resolves(
    gpus: list[Device], t0: dt.datetime
) -> None:
    hot_rule(for_seconds=0)
    report(gpus, [90.0, 40.0])
    evaluating.rules_evaluate(now=t0)
    alert = Alert.objects.get()
    silence = SilenceFactory(alert=alert, expire_on_resolve=True, ends_at=later(t0, 3600))
    keeps = SilenceFactory(alert=alert, expire_on_resolve=False, ends_at=later(t0, 3600))

    report(gpus, [40.0, 40.0])
    evaluating.rules_evaluate(now=later(t0, 15))

    silence.refresh_from_db()
    keeps.refresh_from_db()
    assert silence.ends_at == later(t0, 15)
    assert keeps.ends_at == later(t0, 3600)


def test_a_down_node_inhibits_its_devices_alerts_and_not_another_nodes(
    gpus: list[Device], t0: dt.datetime, heard: list
) -> None:
    others = simulated_node("otherbox", gpus=1)
    hot_rule(for_seconds=0)
    node_down = AlertRuleFactory(
        name="NodeDown", metric="moc_node_heartbeat_age_seconds", op=">", threshold=120.0, for_seconds=0
    )
    InhibitRule.objects.create(
        name="node down mutes its devices",
        source_matchers=[{"label": "alertname", "op": "=", "value": "NodeDown"}],
        target_matchers=[{"label": "device", "op": "=~", "value": ".+"}],
        equal=["node"],
    )
    Node.objects.filter(name="simbox").update(last_heartbeat_at=timezone.now() - dt.timedelta(minutes=10))
    Node.objects.filter(name="otherbox").update(last_heartbeat_at=timezone.now())
    report(gpus, [90.0, 40.0])
    report(others, [95.0])

    evaluating.rules_evaluate(now=t0)

    down = node_down.alerts.get()
    assert (down.labels["node"], down.state, down.inhibited) == ("simbox", AlertState.FIRING, False)
    flags = {a.labels["node"]: a.inhibited for a in Alert.objects.filter(rule__name="GpuHot")}
    assert flags == {"simbox": True, "otherbox": False}
    (muted,) = [a for a in Alert.objects.filter(rule__name="GpuHot") if a.labels["node"] == "simbox"]
    assert heard[-1] == (muted.pk, "firing", False, True)

    Node.objects.filter(name="simbox").update(last_heartbeat_at=timezone.now())  # it is back
    evaluating.rules_evaluate(now=later(t0, 15))

    muted.refresh_from_db()
    assert (node_down.alerts.get().state, muted.inhibited) == (AlertState.RESOLVED, False)


def test_the_task_runs_a_round_and_skips_while_another_holds_the_lock(gpus: list[Device]) -> None:
    hot_rule(for_seconds=0)
    report(gpus, [90.0, 40.0])
    held = redis_client().lock(tasks.EVALUATE_LOCK_KEY, timeout=30)
    assert held.acquire(blocking=False)

    assert tasks.alerts_evaluate() is None
    assert not Alert.objects.exists()

    held.release()
    counts = tasks.alerts_evaluate()

    assert counts is not None
    assert counts["threshold"] == 1
    assert Alert.objects.get().state == AlertState.FIRING
    assert not redis_client().exists(tasks.EVALUATE_LOCK_KEY)


def test_prune_forgets_resolved_alerts_and_deliveries_past_retention(settings: Any) -> None:
    settings.MOC_ALERT_RETENTION_DAYS = 30
    now = timezone.now()
    old = AlertFactory(state=AlertState.RESOLVED, resolved_at=now - dt.timedelta(days=31))
    recent = AlertFactory(state=AlertState.RESOLVED, resolved_at=now - dt.timedelta(days=29))
    still_open = AlertFactory(started_at=now - dt.timedelta(days=40), series={"node": "gpu-02"})
    channel = NotificationChannelFactory()
    gone = Delivery.objects.create(channel=channel, body="{}")
    Delivery.objects.filter(pk=gone.pk).update(created_at=now - dt.timedelta(days=31))
    kept = Delivery.objects.create(channel=channel, body="{}")

    assert tasks.alerts_prune() == {"alerts": 1, "deliveries": 1}

    assert set(Alert.objects.values_list("pk", flat=True)) == {recent.pk, still_open.pk}
    assert not Alert.objects.filter(pk=old.pk).exists()
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]


def test_silence_rows_of_a_pruned_alert_are_kept(settings: Any) -> None:
    old = AlertFactory(state=AlertState.RESOLVED, resolved_at=timezone.now() - dt.timedelta(days=400))
    silence = SilenceFactory(alert=old)

    tasks.alerts_prune()

    silence.refresh_from_db()
    assert silence.alert is None
    assert Silence.objects.filter(pk=silence.pk).exists()


def test_a_rule_whose_evaluation_fails_does_not_stop_another_rules_alert(
    gpus: list[Device], t0: dt.datetime
) -> None:
    broken = hot_rule(name="Broken", for_seconds=0)
    # A matcher no API or form accepts, as an old row or a direct write may hold: matching it raises.
    AlertRule.objects.filter(pk=broken.pk).update(matchers=[{"label": "gpu", "op": "=~", "value": "("}])
    hot_rule(name="GpuHot", for_seconds=0)
    report(gpus, [90.0, 40.0])

    assert evaluating.rules_evaluate(now=t0) == 1

    assert [(a.rule.name, a.state) for a in Alert.objects.all()] == [("GpuHot", AlertState.FIRING)]


def test_a_round_over_many_firing_alerts_of_one_rule_writes_them_in_one_statement(
    t0: dt.datetime, django_assert_max_num_queries: Any
) -> None:
    devices = simulated_node("bigbox", gpus=50)
    rule = hot_rule(for_seconds=0)
    report(devices, [90.0] * 50)
    evaluating.rules_evaluate(now=t0)
    assert rule.alerts.filter(state=AlertState.FIRING).count() == 50
    report(devices, [91.0 + i for i in range(50)])

    with django_assert_max_num_queries(20):
        assert evaluating.rules_evaluate(now=later(t0, 15)) == 0

    alerts = {a.labels["gpu"]: a for a in rule.alerts.all()}
    assert {(a.value, a.peak_value, a.last_breach_at) for a in [alerts["0"], alerts["49"]]} == {
        (91.0, 91.0, later(t0, 15)),
        (140.0, 140.0, later(t0, 15)),
    }
    assert all(a.state == AlertState.FIRING for a in alerts.values())


def test_an_alert_whose_figures_did_not_move_is_not_written(gpus: list[Device], t0: dt.datetime) -> None:
    rule = hot_rule(for_seconds=0, keep_firing_seconds=600)
    report(gpus, [90.0, 40.0])
    evaluating.rules_evaluate(now=t0)
    report(gpus, [80.0, 40.0])  # below: kept firing, a new value
    evaluating.rules_evaluate(now=later(t0, 15))
    written = rule.alerts.get().updated_at

    evaluating.rules_evaluate(now=later(t0, 30))  # the same reading again

    alert = rule.alerts.get()
    assert (alert.state, alert.value, alert.last_breach_at, alert.updated_at) == (
        AlertState.FIRING,
        80.0,
        t0,
        written,
    )


def test_a_silence_or_inhibit_rule_that_cannot_be_matched_is_left_out_and_the_others_still_mute(
    t0: dt.datetime, caplog: pytest.LogCaptureFixture
) -> None:
    gpus = simulated_node("trio", gpus=3)
    channel = NotificationChannelFactory(group_wait_s=0)
    hot_rule(for_seconds=0).channels.add(channel)
    # Rows whose regular expression does not compile (direct writes, or saved before validation).
    InhibitRule.objects.create(
        name="broken", source_matchers=[], target_matchers=[{"label": "gpu", "op": "=~", "value": "("}]
    )
    SilenceFactory(matchers=[{"label": "gpu", "op": "=~", "value": "["}], starts_at=later(t0, -60))
    # And sound ones: GPU 0 firing mutes GPU 1 on the same node; GPU 2 is silenced.
    InhibitRule.objects.create(
        name="gpu 0 mutes gpu 1",
        source_matchers=[{"label": "gpu", "op": "=", "value": "0"}],
        target_matchers=[{"label": "gpu", "op": "=", "value": "1"}],
        equal=["node"],
    )
    SilenceFactory(matchers=[{"label": "gpu", "op": "=", "value": "2"}], starts_at=later(t0, -60))
    report(gpus, [90.0, 91.0, 92.0])

    with caplog.at_level("WARNING", logger="apps.alerts.selectors"):
        counts = tasks.evaluation_round(now=t0)
        tasks.evaluation_round(now=later(t0, 15))

    assert counts["failed"] == 0
    assert counts["threshold"] == 3
    flags = {a.labels["gpu"]: (a.state, a.silenced, a.inhibited) for a in Alert.objects.all()}
    assert flags == {
        "0": (AlertState.FIRING, False, False),
        "1": (AlertState.FIRING, False, True),
        "2": (AlertState.FIRING, True, False),
    }
    assert Delivery.objects.filter(channel=channel).count() == 1  # GPU 0 alone is told
    left_out = [r.getMessage() for r in caplog.records if "is left out" in r.getMessage()]
    assert len(left_out) == 2  # once each, not every round
    assert any("inhibit rule" in text and "broken" in text for text in left_out)
    assert any(text.startswith("alerts: silence ") and "regular expression" in text for text in left_out)
