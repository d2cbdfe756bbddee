"""Concurrent loads onto one device: the database must settle them without over-committing it.

Marked `postgres` as well: scripts/test.sh runs these again against PostgreSQL, where the
device rows are locked with SELECT ... FOR UPDATE (SQLite serialises writers instead).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import placing
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.models import Placement
from tests.fleet.factories import GIB, DeviceFactory
from tests.integration.test_concurrency import run_concurrently
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory
from tests.serving.invariants import reserved_within_capacity

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_sends(dispatched: list) -> None:
    """No worker runs here: what placing sends is only recorded."""


def versions(count: int, size_gib: int) -> list[Any]:
    return [
        ModelVersionFactory(
            format=ModelFormat.HF,
            kind="causal-lm",
            estimated_vram_bytes=size_gib * GIB,
            validation_state=ValidationState.VALID,
        )
        for _ in range(count)
    ]


def attempt(version: Any) -> str:
    try:
        placing.placement_load(version=version)
    except placing.PlacementRefused:
        return "refused"
    return "placed"


def test_concurrent_loads_never_reserve_more_than_the_device_holds() -> None:
    device = DeviceFactory(capacity_bytes=24 * GIB)
    wanted = iter(versions(8, 10))

    results = run_concurrently(lambda: attempt(next(wanted)), 8)

    assert sorted(results) == ["placed"] * 2 + ["refused"] * 6
    held = sum(p.reserved_bytes for p in Placement.objects.filter(device=device, state__in=PLACEMENT_ACTIVE))
    assert held == 20 * GIB


def test_concurrent_loads_that_evict_never_take_the_same_room_twice() -> None:
    device = DeviceFactory(capacity_bytes=24 * GIB)
    long_ago = timezone.now() - timedelta(hours=1)
    for version in versions(2, 10):
        PlacementFactory(
            version=version,
            device=device,
            state=PlacementState.LOADED,
            reserved_bytes=10 * GIB,
            loaded_at=long_ago,
            last_used_at=long_ago,
        )
    wanted = iter(versions(6, 12))

    results = run_concurrently(lambda: attempt(next(wanted)), 6)

    assert results.count("placed") == 1
    assert reserved_within_capacity(device)
    evicted = Placement.objects.filter(device=device, state=PlacementState.UNLOADING)
    assert evicted.count() == 1  # 4 GiB free + one 10 GiB victim make room for 12 GiB


def test_concurrent_loads_of_one_version_place_it_once() -> None:
    DeviceFactory(capacity_bytes=24 * GIB)
    DeviceFactory(capacity_bytes=24 * GIB)
    (version,) = versions(1, 10)

    results = run_concurrently(lambda: placing.placement_load(version=version).pk, 6)

    assert len(set(results)) == 1
    assert Placement.objects.filter(version=version, state__in=PLACEMENT_ACTIVE).count() == 1
