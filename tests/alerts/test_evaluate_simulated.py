"""The issue's rule, end to end: "GPU utilisation > 50 for 10 s" on a simulated GPU sampled by the real
fleet agent, published to a real Redis, read as /metrics reads it, evaluated into the database."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
from django.test.utils import override_settings
from django.utils import timezone

from apps.alerts import evaluating
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert
from apps.fleet.agent import Agent
from apps.fleet.devices.sim import SimBackend
from apps.fleet.models import Device
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from tests.alerts.factories import AlertRuleFactory
from tests.jobs.factories import JobFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def agent() -> Iterator[Agent]:
    with override_settings(MOC_DEVICES="sim:2x24GiB", MOC_TELEMETRY_STORE_S=3600, MOC_NODE_HEARTBEAT_S=3600):
        made = Agent(node_name="simbox", owner="worker-a")
        made.register()
        yield made
        made.stop()


def test_a_busy_simulated_gpu_goes_pending_then_firing_then_resolved(agent: Agent) -> None:
    assert isinstance(agent.backend, SimBackend)
    rule = AlertRuleFactory(
        name="GpuBusy",
        metric="DCGM_FI_DEV_GPU_UTIL",
        op=">",
        threshold=50.0,
        for_seconds=10,
        summary="{{ labels.node }} {{ labels.device }} busy at {{ value }}%",
    )
    device = Device.objects.get(node__name="simbox", index=1)
    sampled = time.time()  # the agent's clock; the messages must be fresh for /metrics to show them
    now = timezone.now()

    def step(seconds: float) -> Alert | None:
        agent.tick(sampled + seconds)
        evaluating.rules_evaluate(now=now + dt.timedelta(seconds=seconds))
        return rule.alerts.order_by("-id").first()

    assert step(0) is None  # idle: nothing to say
    job = JobFactory(device=device, queue=device.queue, state=JobState.RUNNING)
    pending = step(5)  # utilisation settles in a few seconds
    assert pending is not None
    assert (pending.state, pending.labels["device"], pending.labels["simulated"]) == (
        "pending",
        "gpu1",
        "true",
    )
    assert pending.value is not None
    assert pending.value > 50
    assert step(10) == pending
    assert rule.alerts.get().state == AlertState.PENDING

    firing = step(15)  # held for 10 s since it started at 5 s
    assert firing is not None
    assert (firing.state, firing.fired_at) == (AlertState.FIRING, now + dt.timedelta(seconds=15))
    assert firing.annotations["summary"].startswith("simbox gpu1 busy at ")

    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    resolved = step(25)

    assert resolved is not None
    assert (resolved.pk, resolved.state, resolved.resolved_at) == (
        firing.pk,
        AlertState.RESOLVED,
        now + dt.timedelta(seconds=25),
    )
    assert resolved.value is not None
    assert resolved.value < 50
    assert resolved.peak_value is not None
    assert resolved.peak_value > 90  # a running job keeps the GPU nearly saturated
    assert rule.alerts.count() == 1  # the idle GPU 0 never breached
