"""The reaper, for placements whose worker died: lost at the next sweep, saying which node's worker
went silent and since when (its last beat, apps.core.workers.queue_silence)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from apps.core import dispatch, outbox, workers
from apps.core.models import OutboxMessage
from apps.core.redis_clients import redis_client
from apps.serving import messages, placing
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


def requested_long_ago() -> Placement:
    placement = PlacementFactory(state=P.REQUESTED)
    long_ago = timezone.now() - timedelta(minutes=10)
    Placement.objects.filter(pk=placement.pk).update(created_at=long_ago, updated_at=long_ago)
    return placement


def test_a_request_whose_load_message_waited_out_an_outage_is_not_timed_out(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S = 60
    placement = requested_long_ago()  # decided 10 min ago, while the broker was away
    OutboxMessage.objects.create(task_id="load-1", task_name=messages.PLACEMENT_LOAD, args=[placement.pk])

    assert placing.placements_reconcile()["failed"] == 0  # still waiting in the outbox
    sent: list[str] = []
    monkeypatch.setattr(dispatch, "send", lambda name, **_: sent.append(name))
    assert outbox.drain() == 1  # the broker is back
    assert placing.placements_reconcile()["failed"] == 0  # its timeout counts from the send

    assert sent == [messages.PLACEMENT_LOAD]
    assert Placement.objects.get(pk=placement.pk).state == P.REQUESTED


def test_a_request_sent_longer_ago_than_its_timeout_fails(settings: Any) -> None:
    settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S = 60
    placement = requested_long_ago()

    assert placing.placements_reconcile()["failed"] == 1

    failed = Placement.objects.get(pk=placement.pk)
    assert (failed.state, failed.error) == (P.FAILED, "No worker took it within 60 s.")


def unloading_long_ago() -> Placement:
    """A placement asked to unload 10 minutes ago, on a device whose worker beats."""
    placement = PlacementFactory(state=P.UNLOADING)
    queue = placement.device.queue
    workers.beat(redis_client(), f"{queue}@host", [queue], time.time() - 60)
    long_ago = timezone.now() - timedelta(minutes=10)
    Placement.objects.filter(pk=placement.pk).update(updated_at=long_ago)
    return placement


def test_an_unload_whose_message_waits_in_the_outbox_is_not_asked_again(settings: Any) -> None:
    settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S = 60
    placement = unloading_long_ago()  # asked 10 min ago, while the broker was away
    OutboxMessage.objects.create(task_id="unload-1", task_name=messages.PLACEMENT_UNLOAD, args=[placement.pk])

    assert placing.placements_reconcile() == {"lost": 0, "failed": 0, "unloads_resent": 0}
    assert OutboxMessage.objects.filter(task_name=messages.PLACEMENT_UNLOAD).count() == 1
    assert Placement.objects.get(pk=placement.pk).state == P.UNLOADING


def test_an_unload_whose_message_was_lost_is_asked_again(settings: Any) -> None:
    settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S = 60
    placement = unloading_long_ago()

    assert placing.placements_reconcile() == {"lost": 0, "failed": 0, "unloads_resent": 1}
    assert list(OutboxMessage.objects.values_list("task_name", "args")) == [
        (messages.PLACEMENT_UNLOAD, [placement.pk])
    ]
