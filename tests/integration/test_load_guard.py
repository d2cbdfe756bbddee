"""The load guard on a real device worker (simulated GPU, thread pool of one): a load that really
outgrows its reservation is stopped as out_of_memory and what it took is freed, the worker still
answering; an unload sent during a slow load ends it within seconds, though the unload message
itself waits behind the load in the worker's only thread."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from apps.fleet.models import Device
from apps.models import demo
from apps.models.domain.formats import ModelFormat
from apps.serving import messages, placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from moc_site.celery import app
from tests.integration.test_serving import settled
from tests.models.factories import ModelVersionFactory
from tests.procs import Process, RedisServer, wait_until
from tests.serving.runaway import inflated_lm

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-guard"
QUEUE = f"gpu.{NODE}.0"
P = PlacementState
MiB = 1024**2


@pytest.fixture
def runaway(demo_models: Path, tmp_path: Path) -> Path:
    """A model root holding the issue's runaway: 24 layers x 1024 claimed, about 1.2 GiB of tensors
    built over seconds before the load would fail."""
    root = tmp_path / "runaway-root"
    root.mkdir()
    return inflated_lm(demo_models, root, layers=24, hidden=1024)


@pytest.fixture
def guarded_worker(start_worker: Callable[..., Process], demo_models: Path, runaway: Path) -> Process:
    worker = start_worker(
        queues=QUEUE,
        pool="threads",
        name="guard0",
        MOC_DEVICES="sim:1x24GiB",
        MOC_NODE_NAME=NODE,
        MOC_MODEL_ROOTS=f"{demo_models},{runaway.parent}",
    )
    wait_until(
        lambda: Device.objects.filter(node__name=NODE).exists(), 30, "the worker to register its device"
    )
    # A first load pays for importing torch and transformers: the loads under test then start at once.
    warm = lm_version(demo_models / demo.BASE, reserve=512 * MiB)
    assert settled(placing.placement_load(version=warm), {P.LOADED, P.FAILED}).state == P.LOADED
    return worker


def lm_version(path: Path, *, reserve: int) -> Any:
    """A version of the LM at `path` whose placements reserve `reserve` bytes (the registry's estimate)."""
    return ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        path=str(path),
        estimated_vram_bytes=reserve,
        size_bytes=reserve,
    )


def pings(redis_server: RedisServer) -> bool:
    """Whether the device's worker answers a ping through its own queue."""
    reply_key = f"moc:reply:{uuid.uuid4().hex}"
    app.send_task(messages.DEVICE_PING, args=[reply_key], queue=QUEUE, ignore_result=True)
    answered = redis_server.client().blpop([reply_key], timeout=30)
    return answered is not None and json.loads(answered[1])["ok"] is True


def test_a_load_that_really_outgrows_its_reservation_fails_out_of_memory_and_the_worker_lives_on(
    guarded_worker: Process, runaway: Path, redis_server: RedisServer
) -> None:
    worker_memory = psutil.Process(guarded_worker.proc.pid)
    before = worker_memory.memory_info().rss

    placement = settled(placing.placement_load(version=lm_version(runaway, reserve=8 * MiB)), {P.FAILED})

    assert placement.error_class == "out_of_memory", placement.error
    assert placement.error.startswith("took ")
    assert "over its 8.0 MiB reservation (a load may take up to 264.0 MiB)" in placement.error
    assert guarded_worker.alive()
    assert pings(redis_server)
    assert worker_memory.memory_info().rss - before < 200 * MiB  # what it took was freed
    # Not placed again: with the same reservation it would only run away again.
    assert not Placement.objects.filter(version=placement.version).exclude(pk=placement.pk).exists()


def test_an_unload_during_a_slow_load_ends_it_within_seconds(
    guarded_worker: Process, runaway: Path, redis_server: RedisServer
) -> None:
    placement = placing.placement_load(version=lm_version(runaway, reserve=4 * 1024 * MiB))
    settled(placement, {P.LOADING}, timeout=30)
    time.sleep(0.5)  # into building its tensors, which takes it about 3 s here

    # What the Unload button and the API call do: the placement goes UNLOADING at once, and its
    # unload message waits behind the load in the worker's only thread.
    assert placing.placement_unload(placement=placement, reason="asked by a test")
    asked = time.monotonic()
    placement = settled(placement, {P.UNLOADED, P.FAILED}, timeout=30)
    took = time.monotonic() - asked

    assert placement.state == P.UNLOADED, placement.error
    assert placement.end_reason.startswith("asked by a test (unloaded during load: stopped after ")
    assert took < 3.0, f"the unload took {took:.1f} s"
    assert pings(redis_server)
