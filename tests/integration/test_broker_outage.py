"""Writes that need the broker, made while Redis is really stopped: each is accepted with nothing
half-done, its message waits in the outbox, and once Redis is back the default worker's drainer
sends it and the work happens within seconds (not at the next reconciler tick)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test.utils import override_settings
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import OutboxMessage
from apps.fleet.models import Device
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.models.domain.states import ScanState
from apps.models.models import ScanRun
from apps.serving import messages
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.procs import Process, RedisServer, wait_until
from tests.serving.api.test_serving import lm
from tests.serving.factories import PlacementFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-outage"
QUEUE = f"gpu.{NODE}.0"
P = PlacementState
# From Redis answering again to the work done: the worker reconnects (Celery backs off up to a
# few seconds), the drainer's next pass (1 s) sends, the worker runs it.
BACK_WITHIN_S = 30


@pytest.fixture
def outage(redis_server: RedisServer) -> Iterator[Callable[[], Any]]:
    """`with outage():` stops the session's real redis-server for the block and starts it again
    (same port, same append-only file) after it; Redis is always running again after the test."""

    @contextmanager
    def stopped() -> Iterator[None]:
        redis_server.stop()
        try:
            yield
        finally:
            redis_server.start()

    yield stopped
    if redis_server.proc is None:
        redis_server.start()


@pytest.fixture
def device_worker(start_worker: Callable[..., Process]) -> Device:
    """A device worker (simulated GPU, thread pool) and a default worker, whose drainer sends what
    the outbox holds."""
    start_worker(queues=QUEUE, pool="threads", name="dev0", MOC_DEVICES="sim:1x24GiB", MOC_NODE_NAME=NODE)
    start_worker(name="default0")
    wait_until(
        lambda: Device.objects.filter(node__name=NODE).exists(), 30, "the worker to register its device"
    )
    return Device.objects.get(node__name=NODE)


def settled(check: Callable[[], bool], what: str) -> float:
    """Seconds from now until `check` holds (at most BACK_WITHIN_S)."""
    start = time.monotonic()
    wait_until(check, BACK_WITHIN_S, what, 0.2)
    return time.monotonic() - start


@pytest.mark.postgres
def test_a_load_asked_during_the_outage_is_accepted_whole_and_sent_once_redis_is_back(
    device_worker: Device, outage: Callable, client_as: Callable[[Role | None], APIClient]
) -> None:
    operator = client_as(Role.OPERATOR)
    version = lm()

    with outage():
        response = operator.post("/api/v1/placements/", {"version": version.pk}, format="json")
        placement = Placement.objects.get()
        waiting = list(OutboxMessage.objects.values_list("task_name", "options"))

    assert response.status_code == 201, response.json()
    assert placement.state == P.REQUESTED
    assert waiting == [(messages.PLACEMENT_LOAD, {"queue": device_worker.queue})]
    # The device's worker takes it (and, the files being absent, fails it: the message arrived).
    took = settled(
        lambda: Placement.objects.get(pk=placement.pk).state != P.REQUESTED, "the worker to take the load"
    )
    assert not OutboxMessage.objects.exists()
    print(f"load sent and taken {took:.1f} s after Redis came back")


@pytest.mark.postgres
def test_an_unload_asked_during_the_outage_is_accepted_whole_and_done_once_redis_is_back(
    device_worker: Device, outage: Callable, client_as: Callable[[Role | None], APIClient]
) -> None:
    operator = client_as(Role.OPERATOR)
    placement = PlacementFactory(version=lm(), device=device_worker, state=P.LOADED)

    with outage():
        response = operator.post(f"/api/v1/placements/{placement.pk}/unload/", {}, format="json")
        placement.refresh_from_db()
        assert OutboxMessage.objects.filter(task_name=messages.PLACEMENT_UNLOAD).count() == 1

    assert response.status_code == 200, response.json()
    assert placement.state == P.UNLOADING
    took = settled(
        lambda: Placement.objects.get(pk=placement.pk).state == P.UNLOADED, "the worker to unload it"
    )
    print(f"unload done {took:.1f} s after Redis came back")


@pytest.mark.postgres
def test_a_job_created_during_the_outage_starts_within_seconds_of_redis_returning(
    start_worker: Callable[..., Process], outage: Callable, client_as: Callable[[Role | None], APIClient]
) -> None:
    start_worker(name="default0")
    operator = client_as(Role.OPERATOR)

    with outage():
        response = operator.post(
            "/api/v1/jobs/", {"kind": "selftest", "params": {"checks": ["database"]}}, format="json"
        )
        job = Job.objects.get()

    assert response.status_code == 201, response.json()
    assert job.dispatched_at is None
    took = settled(lambda: Job.objects.get(pk=job.pk).state == JobState.SUCCEEDED, "the job to run")
    job.refresh_from_db()
    assert job.dispatched_at is not None
    assert job.attempts == 1
    print(f"job done {took:.1f} s after Redis came back")


def test_a_scan_asked_during_the_outage_runs_once_redis_is_back_and_blocks_no_later_scan(
    start_worker: Callable[..., Process],
    outage: Callable,
    client_as: Callable[[Role | None], APIClient],
    tmp_path: Any,
) -> None:
    roots = tmp_path / "models"
    roots.mkdir()
    start_worker(name="default0", MOC_MODEL_ROOTS=str(roots))
    operator = client_as(Role.OPERATOR)

    with override_settings(MOC_MODEL_ROOTS=[str(roots)]), outage():
        response = operator.post("/api/v1/scans/", {}, format="json")

    assert response.status_code == 202, response.json()
    scan = ScanRun.objects.get()
    took = settled(
        lambda: ScanRun.objects.get(pk=scan.pk).state not in {ScanState.QUEUED, ScanState.RUNNING},
        "the scan to finish",
    )
    assert ScanRun.objects.get(pk=scan.pk).state == ScanState.SUCCEEDED
    with override_settings(MOC_MODEL_ROOTS=[str(roots)]):
        assert operator.post("/api/v1/scans/", {}, format="json").status_code == 202
    print(f"scan done {took:.1f} s after Redis came back")
