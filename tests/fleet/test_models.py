import pytest
from django.db import IntegrityError

from apps.fleet.domain.kinds import DeviceKind
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import DeviceFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

P = PlacementState


@pytest.mark.parametrize("state", [P.REQUESTED, P.LOADING, P.LOADED, P.UNLOADING])
def test_the_database_refuses_two_active_placements_of_a_version_on_one_device(state: P) -> None:
    first = PlacementFactory(state=P.LOADED)

    with pytest.raises(IntegrityError):
        PlacementFactory(version=first.version, device=first.device, state=state)


@pytest.mark.parametrize("state", [P.UNLOADED, P.FAILED, P.LOST])
def test_ended_placements_do_not_count_against_the_one_active_rule(state: P) -> None:
    first = PlacementFactory(state=P.LOADED)

    ended = PlacementFactory(version=first.version, device=first.device, state=state)

    assert ended.pk is not None


def test_the_same_version_may_be_active_on_two_devices() -> None:
    first = PlacementFactory(state=P.LOADED)

    assert PlacementFactory(version=first.version, state=P.LOADED).pk is not None


def test_a_node_has_one_device_per_kind_and_index() -> None:
    gpu = DeviceFactory(index=0, kind=DeviceKind.GPU)

    with pytest.raises(IntegrityError):
        DeviceFactory(node=gpu.node, index=0, kind=DeviceKind.GPU)


def test_a_nodes_cpu_and_first_gpu_may_share_index_zero() -> None:
    gpu = DeviceFactory(index=0, kind=DeviceKind.GPU)

    assert DeviceFactory(node=gpu.node, index=0, kind=DeviceKind.CPU).pk is not None
