"""The fleet's gauges alert rules watch: each device's memory in use as a share of its memory, and
each node's heartbeat age (from the database, for the nodes not marked offline)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.fleet import registration
from apps.fleet.domain.states import NodeState
from tests.fleet.factories import NodeFactory
from tests.fleet.test_metrics import GPU0, samples, send, sim_gpu, value
from tests.fleet.test_registration import INFO
from tests.procs import RedisServer

pytestmark = pytest.mark.django_db
RATIO = "moc_device_memory_used_ratio"
HEARTBEAT = "moc_node_heartbeat_age_seconds"


def test_memory_used_ratio_is_used_over_total_from_the_telemetry_message(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0, mem_used_bytes=6 * 1024**3, mem_total_bytes=24 * 1024**3)])

    assert value(scrape(), RATIO, **GPU0) == pytest.approx(0.25)


def test_a_device_that_reports_no_memory_figure_has_no_ratio(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0, mem_used_bytes=None), sim_gpu(1, mem_total_bytes=0), sim_gpu(2)])

    assert [s.labels["device"] for s in samples(scrape(), RATIO)] == ["gpu2"]


def test_each_node_has_its_heartbeat_age_in_seconds(scrape: Callable[[], str]) -> None:
    NodeFactory(name="box-a", last_heartbeat_at=timezone.now() - timedelta(seconds=90))
    NodeFactory(name="box-b", last_heartbeat_at=timezone.now())
    NodeFactory(name="never-heard", last_heartbeat_at=None)

    text = scrape()

    assert value(text, HEARTBEAT, node="box-a") == pytest.approx(90, abs=5)
    assert value(text, HEARTBEAT, node="box-b") == pytest.approx(0, abs=5)
    assert samples(text, HEARTBEAT, node="never-heard") == []


def test_the_heartbeat_age_is_there_with_redis_away(settings: object, scrape: Callable[[], str]) -> None:
    """It is read from the database, so a node's growing age shows even while Redis is down."""
    NodeFactory(name="box-a", last_heartbeat_at=timezone.now() - timedelta(seconds=300))
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # type: ignore[attr-defined]

    assert value(scrape(), HEARTBEAT, node="box-a") == pytest.approx(300, abs=5)


def test_a_node_marked_offline_leaves_the_heartbeat_gauge_and_comes_back_when_it_registers(
    scrape: Callable[[], str],
) -> None:
    """Late is NodeDown's business, lost is NodeLost's: once the sweep marks the node offline its age
    is no longer exported, so a rule on it resolves rather than firing for ever beside NodeLost."""
    now = timezone.now()
    NodeFactory(name="box-a", last_heartbeat_at=now - timedelta(seconds=300))
    NodeFactory(name="box-b", last_heartbeat_at=now - timedelta(seconds=40), state=NodeState.DRAINING)
    assert value(scrape(), HEARTBEAT, node="box-a") == pytest.approx(300, abs=5)

    assert registration.nodes_mark_offline(now=now) == ["box-a"]

    text = scrape()
    assert samples(text, HEARTBEAT, node="box-a") == []
    assert value(text, HEARTBEAT, node="box-b") == pytest.approx(40, abs=5)  # draining is still up

    registration.node_register(name="box-a", info=INFO, devices=[])  # its worker started again
    assert value(scrape(), HEARTBEAT, node="box-a") == pytest.approx(0, abs=5)
