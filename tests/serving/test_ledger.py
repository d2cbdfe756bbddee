"""The memory ledger: placements and running jobs' reservations, added up in one place, as the
scheduler and fleet's pages read them."""

from __future__ import annotations

import pytest

from apps.fleet import holdings, selectors
from apps.fleet.holdings import Activity, NothingHeld
from apps.fleet.models import Device
from apps.jobs.domain.states import JobState
from apps.serving import ledger
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import GIB, DeviceFactory
from tests.jobs.factories import JobFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
P = PlacementState


def test_serving_is_the_provider_fleet_asks() -> None:
    assert isinstance(holdings.provider(), ledger.LedgerHoldings)


def test_a_devices_reserved_memory_is_its_placements_and_its_running_jobs_reservations() -> None:
    device = DeviceFactory()
    PlacementFactory(device=device, state=P.LOADED, reserved_bytes=4 * GIB, measured_bytes=GIB)
    PlacementFactory(device=device, state=P.FAILED, reserved_bytes=8 * GIB)
    JobFactory(device=device, state=JobState.RUNNING, reserved_bytes=2 * GIB)
    JobFactory(device=device, state=JobState.SUCCEEDED, reserved_bytes=16 * GIB)

    row = selectors.device_list().get(pk=device.pk)

    assert (row.reserved_bytes, row.active_placements) == (3 * GIB, 1)
    assert ledger.held([device.pk]) == {device.pk: 3 * GIB}


def test_holdings_name_each_placement_and_each_running_job_of_a_device() -> None:
    device, other = DeviceFactory(), DeviceFactory()
    placement = PlacementFactory(device=device, state=P.LOADING, reserved_bytes=GIB)
    job = JobFactory(device=device, state=JobState.CANCELLING)

    found = holdings.provider().holdings([device.pk, other.pk])

    assert found[other.pk] == []
    [held, running] = found[device.pk]
    assert (held.kind, held.label, held.held_bytes, held.state) == (
        "placement",
        str(placement.version),
        GIB,
        "loading",
    )
    assert (running.kind, running.label, running.url) == ("job", str(job), job.get_absolute_url())


def test_a_simulated_devices_activity_counts_held_memory_running_jobs_and_uses() -> None:
    device = DeviceFactory()
    PlacementFactory(device=device, state=P.LOADED, reserved_bytes=GIB, use_count=7)
    JobFactory(device=device, state=JobState.RUNNING, reserved_bytes=GIB)

    assert holdings.provider().activity([device.pk]) == {
        device.pk: Activity(held_bytes=2 * GIB, running_jobs=1, uses=7)
    }


def test_fleet_on_its_own_holds_nothing_on_its_devices() -> None:
    device = DeviceFactory()
    PlacementFactory(device=device, state=P.LOADED)
    alone = NothingHeld()

    row = alone.annotate(Device.objects.filter(pk=device.pk)).get()

    assert (row.reserved_bytes, row.active_placements) == (0, 0)
    assert alone.holdings([device.pk]) == {device.pk: []}
    assert alone.activity([device.pk]) == {device.pk: Activity()}
