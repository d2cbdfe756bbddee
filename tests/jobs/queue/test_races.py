"""Dispatch rounds and loads racing for one device: the database must settle them without
over-committing it. Marked `postgres` as well: scripts/test.sh runs these again against PostgreSQL,
where the device and job rows are locked with SELECT ... FOR UPDATE (SQLite serialises writers)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import ledger, placing
from tests.fleet.factories import GIB
from tests.integration.test_concurrency import run_concurrently
from tests.jobs.queue.conftest import dataset, fine_tune, gpu, lm
from tests.models.factories import ModelVersionFactory

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_sends(dispatched: list) -> None:
    """No worker runs here: what is sent is only recorded."""


def waiting(count: int, gib: int) -> list[Job]:
    return [
        services.job_create(
            kind="fine_tune", params=fine_tune(lm(), dataset(), memory_bytes=gib * GIB), wait_for_room=True
        )
        for _ in range(count)
    ]


def test_concurrent_dispatch_rounds_reserve_each_job_once_and_never_over_commit() -> None:
    device = gpu(24)
    waiting(6, 10)

    sent = run_concurrently(lambda: services.jobs_dispatch(now=timezone.now()), 4)

    assert sum(sent) == 2  # type: ignore[arg-type]
    assert Job.objects.filter(reserved_bytes__gt=0).count() == 2
    assert ledger.held([device.pk])[device.pk] <= device.capacity_bytes


def test_a_dispatch_round_and_loads_racing_for_one_device_never_over_commit_it() -> None:
    device = gpu(24)
    waiting(2, 10)
    models = [
        ModelVersionFactory(
            format=ModelFormat.HF,
            kind="causal-lm",
            estimated_vram_bytes=10 * GIB,
            validation_state=ValidationState.VALID,
        )
        for _ in range(2)
    ]
    turn = itertools.count()

    def act() -> Any:
        mine = next(turn)  # itertools.count hands each thread its own turn
        if mine == 0:
            return services.jobs_dispatch(now=timezone.now())
        try:
            return placing.placement_load(version=models[mine - 1], device=device)
        except placing.PlacementRefused:
            return "refused"

    run_concurrently(act, 3)

    assert ledger.held([device.pk])[device.pk] <= device.capacity_bytes
