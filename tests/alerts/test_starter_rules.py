"""The starter rules as `alerts_defaults` makes them, over real figures: GpuBusy fires on a simulated GPU
that a job keeps busy (and no other starter does), and a node that stops sending heartbeats pages once,
as NodeLost, while a restart that re-registers within seconds fires nothing."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test.utils import override_settings
from django.utils import timezone

from apps.alerts import evaluating
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert
from apps.fleet import registration
from apps.fleet.agent import Agent
from apps.fleet.devices.sim import SimBackend
from apps.fleet.models import Device, Node
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from tests.fleet.factories import NodeFactory
from tests.fleet.test_registration import INFO
from tests.jobs.factories import JobFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def starters() -> None:
    call_command("alerts_defaults", stdout=StringIO())


@pytest.fixture
def agent() -> Iterator[Agent]:
    with override_settings(MOC_DEVICES="sim:2x24GiB", MOC_TELEMETRY_STORE_S=3600, MOC_NODE_HEARTBEAT_S=3600):
        made = Agent(node_name="simbox", owner="worker-a")
        made.register()
        yield made
        made.stop()


def alerts(name: str) -> list[Alert]:
    return list(Alert.objects.filter(rule__name=name).order_by("pk"))


def test_gpu_busy_fires_on_a_simulated_gpu_a_job_keeps_busy_and_no_other_starter_does(agent: Agent) -> None:
    assert isinstance(agent.backend, SimBackend)
    device = Device.objects.get(node__name="simbox", index=1)
    sampled = time.time()  # the agent's clock; its messages must be fresh for /metrics to show them
    now = timezone.now()

    def step(seconds: float) -> Alert | None:
        agent.tick(sampled + seconds)
        evaluating.rules_evaluate(now=now + dt.timedelta(seconds=seconds))
        return Alert.objects.filter(rule__name="GpuBusy").order_by("-pk").first()

    assert step(0) is None  # idle
    job = JobFactory(device=device, queue=device.queue, state=JobState.RUNNING)  # a fine-tune, say
    step(5)  # utilisation settles in a few seconds: ~87% here
    pending = step(10)
    assert pending is not None
    assert (pending.state, pending.labels["device"], pending.labels["simulated"]) == (
        AlertState.PENDING,
        "gpu1",
        "true",
    )
    assert (pending.labels["severity"], pending.started_at) == ("info", now + dt.timedelta(seconds=10))
    assert step(40) == pending
    assert alerts("GpuBusy")[0].state == AlertState.PENDING

    firing = step(70)  # busy for a minute
    assert firing is not None
    assert (firing.pk, firing.state) == (pending.pk, AlertState.FIRING)
    assert firing.annotations["summary"].startswith("GPU 1 on simbox is 9")
    assert "template error" not in firing.annotations["description"]

    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    resolved = step(80)
    assert resolved is not None
    assert (resolved.pk, resolved.state) == (firing.pk, AlertState.RESOLVED)
    # A fully busy simulated card tops out below GpuTemperatureHigh's 85 °C, and its node is heard:
    # the demo's one alert is GpuBusy, on the busy GPU alone.
    assert [a.rule.name for a in Alert.objects.all()] == ["GpuBusy"]


def silent(node: Node, seconds: float) -> None:
    """The node's last heartbeat, `seconds` ago (the gauge reads it against the clock)."""
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now() - dt.timedelta(seconds=seconds))


@pytest.fixture
def t0() -> dt.datetime:
    return timezone.now().replace(microsecond=0)


def later(t0: dt.datetime, seconds: float) -> dt.datetime:
    return t0 + dt.timedelta(seconds=seconds)


def test_a_restart_that_re_registers_within_seconds_fires_no_node_down(t0: dt.datetime) -> None:
    """MOC was stopped for five minutes: the first round sees the node's old heartbeat, its worker
    registers a few seconds later, and NodeDown's pending alert resolves without firing."""
    node = NodeFactory(name="box-1")
    silent(node, 300)

    evaluating.rules_evaluate(now=t0)
    (down,) = alerts("NodeDown")
    assert down.state == AlertState.PENDING

    registration.node_register(name="box-1", info=INFO, devices=[])
    evaluating.rules_evaluate(now=later(t0, 15))

    down.refresh_from_db()
    assert (down.state, down.fired_at) == (AlertState.RESOLVED, None)
    assert not Alert.objects.exclude(pk=down.pk).exists()


def test_a_node_that_goes_silent_pages_once_as_node_lost(t0: dt.datetime) -> None:
    """With the default MOC_NODE_OFFLINE_AFTER_S (60 s) the sweep marks the node offline before NodeDown's
    minute is up: the node leaves the heartbeat gauge, NodeDown resolves unseen, NodeLost is the page."""
    node = NodeFactory(name="box-1")
    silent(node, 45)
    evaluating.rules_evaluate(now=t0)
    assert [a.state for a in alerts("NodeDown")] == [AlertState.PENDING]

    silent(node, 61)
    assert registration.nodes_mark_offline() == ["box-1"]
    evaluating.rules_evaluate(now=later(t0, 15))

    (down,) = alerts("NodeDown")
    assert (down.state, down.fired_at) == (AlertState.RESOLVED, None)
    (lost,) = alerts("NodeLost")
    assert (lost.state, lost.labels["severity"], lost.labels["node"]) == (
        AlertState.FIRING,
        "critical",
        "box-1",
    )
    evaluating.rules_evaluate(now=later(t0, 120))  # the node stays away: nothing more
    assert Alert.objects.filter(state=AlertState.FIRING).count() == 1
    assert not Alert.objects.filter(rule__name="NodeDown", state__in=["pending", "firing"]).exists()


def test_where_a_node_is_given_longer_node_down_warns_and_node_lost_then_mutes_it(
    t0: dt.datetime, settings: Any
) -> None:
    settings.MOC_NODE_OFFLINE_AFTER_S = 300
    node = NodeFactory(name="box-1")
    other = NodeFactory(name="box-2")
    silent(node, 40)
    silent(other, 40)
    evaluating.rules_evaluate(now=t0)
    silent(node, 100)
    silent(other, 100)
    evaluating.rules_evaluate(now=later(t0, 60))
    downs = {a.labels["node"]: a for a in alerts("NodeDown")}
    assert {name: (a.state, a.labels["severity"]) for name, a in downs.items()} == {
        "box-1": (AlertState.FIRING, "warning"),
        "box-2": (AlertState.FIRING, "warning"),
    }

    silent(node, 301)
    assert registration.nodes_mark_offline() == ["box-1"]
    evaluating.mutes_refresh(now=later(t0, 61))

    flags = {a.labels["node"]: a.inhibited for a in alerts("NodeDown")}
    assert flags == {"box-1": True, "box-2": False}  # the lost node's NodeDown only
    evaluating.rules_evaluate(now=later(t0, 75))
    states = {a.labels["node"]: a.state for a in alerts("NodeDown")}
    assert states == {"box-1": AlertState.RESOLVED, "box-2": AlertState.FIRING}
