"""A placement whose model is gone from its worker: one rule for every path that finds one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apps.fleet import registration
from apps.fleet.domain.states import DeviceHealth
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import placing
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
P = PlacementState


@pytest.fixture(autouse=True)
def _no_worker(dispatched: list) -> None:
    """No worker runs here: loads sent to one are only recorded."""


def loaded(**fields: Any) -> Placement:
    version = ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        estimated_vram_bytes=GIB,
        validation_state=ValidationState.VALID,
    )
    return PlacementFactory(version=version, state=P.LOADED, reserved_bytes=GIB, **fields)


def test_a_placement_its_worker_lost_is_loaded_again_on_the_same_device() -> None:
    placement = loaded()

    again = placing.placement_lost(placement, error="not resident", reload=placing.Reload.SAME_DEVICE)

    placement.refresh_from_db()
    assert (placement.state, placement.error_class, placement.error) == (
        P.LOST,
        ErrorClass.DEVICE_LOST,
        "not resident",
    )
    assert again is not None
    assert (again.version, again.device, again.state) == (placement.version, placement.device, P.REQUESTED)


def test_a_placement_lost_with_its_device_is_loaded_again_elsewhere() -> None:
    placement = loaded()
    other = DeviceFactory(node=placement.device.node, capacity_bytes=24 * GIB)

    again = placing.placement_lost(placement, error="device lost", reload=placing.Reload.ELSEWHERE)

    assert again is not None
    assert again.device == other


def test_a_placement_no_other_device_can_take_is_asked_of_its_own_device_again() -> None:
    """Its device may only have looked lost (a worker taken for dead): if it was not, it loads."""
    placement = loaded()

    again = placing.placement_lost(placement, error="worker silent", reload=placing.Reload.ELSEWHERE)

    assert again is not None
    assert (again.device, again.state) == (placement.device, P.REQUESTED)


def test_a_lost_placement_nothing_can_take_stays_lost_without_an_error() -> None:
    placement = loaded(device=DeviceFactory(health=DeviceHealth.UNHEALTHY))

    assert placing.placement_lost(placement, error="device lost", reload=placing.Reload.ELSEWHERE) is None
    placement.refresh_from_db()
    assert placement.state == P.LOST


def test_a_lost_adapter_is_not_loaded_again_on_its_own() -> None:
    base = loaded()
    adapter = loaded(device=base.device, depends_on=base)

    assert placing.placement_lost(adapter, error="gone", reload=placing.Reload.SAME_DEVICE) is None
    assert Placement.objects.filter(version=adapter.version).count() == 1


def test_a_placement_another_writer_already_ended_is_left_as_it_is() -> None:
    placement = loaded()
    Placement.objects.filter(pk=placement.pk).update(state=P.UNLOADED)

    assert placing.placement_lost(placement, error="late", reload=placing.Reload.SAME_DEVICE) is None
    placement.refresh_from_db()
    assert placement.state == P.UNLOADED


def test_a_node_gone_offline_loses_what_it_held_through_fleets_signal() -> None:
    node = NodeFactory(last_heartbeat_at=datetime(2000, 1, 1, tzinfo=UTC))
    placement = loaded(device=DeviceFactory(node=node))

    assert registration.nodes_mark_offline() == [node.name]

    placement.refresh_from_db()
    assert placement.state == P.LOST
    assert placement.error.startswith(f"Lost: no heartbeat from node {node.name} since 2000-")
    assert not Placement.objects.filter(state=P.REQUESTED).exists()
