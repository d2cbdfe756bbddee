"""The reaper, for placements whose worker died: lost at the next sweep, saying which node's worker
went silent and since when (its last beat, apps.core.workers.queue_silence)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from apps.core import workers
from apps.core.redis_clients import redis_client
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.fleet.factories import DeviceFactory, NodeFactory
from tests.procs import wait_until
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
P = PlacementState


@pytest.fixture(autouse=True)
def _silence_settles(settings: Any) -> None:
    settings.MOC_WORKER_SILENT_AFTER_S = 2
    wait_until(lambda: workers.heartbeats_settled(redis_client()), 10, "Redis to be up for 2 s")
    workers.beat(redis_client(), "default@host", ["default"], time.time())  # the reaper's own worker


def loaded_long_ago(node: str) -> Placement:
    placement = PlacementFactory(device=DeviceFactory(node=NodeFactory(name=node), index=0), state=P.LOADED)
    Placement.objects.filter(pk=placement.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    return placement


def test_the_reaper_names_the_node_whose_worker_went_silent_and_since_when() -> None:
    placement = loaded_long_ago("node-b")
    last = time.time() - 40
    with time_machine.travel(last, tick=False):
        workers.beat(redis_client(), "gpu.node-b.0@host", ["gpu.node-b.0"], last - 60)
    redis_client().delete(f"{workers.KEY_PREFIX}gpu.node-b.0@host")  # its TTL ran out long ago

    assert placing.placements_reconcile()["lost"] == 1

    placement.refresh_from_db()
    assert placement.state == P.LOST
    since = datetime.fromtimestamp(last, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f"node-b's worker for gpu.node-b.0 has been silent since {since}" in placement.error


def test_the_reaper_loses_at_once_what_a_cleanly_stopped_worker_held() -> None:
    placement = loaded_long_ago("node-b")
    workers.beat(redis_client(), "gpu.node-b.0@host", ["gpu.node-b.0"], time.time() - 60, stopped=True)

    assert placing.placements_reconcile()["lost"] == 1

    assert "node-b's worker for gpu.node-b.0 stopped at" in Placement.objects.get(pk=placement.pk).error


def test_the_reaper_leaves_a_placement_whose_worker_beats() -> None:
    placement = loaded_long_ago("node-b")
    workers.beat(redis_client(), "gpu.node-b.0@host", ["gpu.node-b.0"], time.time() - 60)

    assert placing.placements_reconcile()["lost"] == 0

    assert Placement.objects.get(pk=placement.pk).state == P.LOADED
