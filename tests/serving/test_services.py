import pytest
from django.core.exceptions import ValidationError

from apps.core.domain.statemachine import InvalidTransition
from apps.fleet.domain.states import DeviceHealth
from apps.models.domain.states import ValidationState
from apps.serving import services
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.fleet.factories import GIB, DeviceFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

P = PlacementState


def test_request_creates_a_requested_placement_holding_the_memory() -> None:
    version, device = ModelVersionFactory(), DeviceFactory()

    placement = services.placement_request(
        version=version, device=device, reserved_bytes=12 * GIB, pinned=True
    )

    stored = Placement.objects.get(pk=placement.pk)
    assert (stored.state, stored.reserved_bytes, stored.pinned) == (P.REQUESTED, 12 * GIB, True)


def test_request_refuses_a_second_active_placement_of_the_version_on_the_device() -> None:
    existing = PlacementFactory(state=P.LOADED)

    with pytest.raises(ValidationError) as err:
        services.placement_request(version=existing.version, device=existing.device, reserved_bytes=GIB)
    assert "version" in err.value.message_dict


def test_request_may_place_again_after_the_last_placement_ended() -> None:
    ended = PlacementFactory(state=P.UNLOADED)

    again = services.placement_request(version=ended.version, device=ended.device, reserved_bytes=GIB)

    assert again.pk != ended.pk


def test_request_refuses_a_version_that_failed_validation_and_says_why() -> None:
    version = ModelVersionFactory(
        validation_state=ValidationState.INVALID, validation_error="offsets_contiguous: tensor b overlaps a"
    )

    with pytest.raises(ValidationError) as err:
        services.placement_request(version=version, device=DeviceFactory(), reserved_bytes=GIB)
    assert "tensor b overlaps a" in err.value.message_dict["version"][0]


def test_request_refuses_an_archived_version() -> None:
    version = ModelVersionFactory(archived=True)

    with pytest.raises(ValidationError):
        services.placement_request(version=version, device=DeviceFactory(), reserved_bytes=GIB)


@pytest.mark.parametrize("health", [DeviceHealth.UNHEALTHY, DeviceHealth.UNAVAILABLE])
def test_request_refuses_a_device_that_cannot_take_work(health: DeviceHealth) -> None:
    with pytest.raises(ValidationError) as err:
        services.placement_request(
            version=ModelVersionFactory(), device=DeviceFactory(health=health), reserved_bytes=GIB
        )
    assert "device" in err.value.message_dict


def test_request_refuses_reserving_nothing() -> None:
    with pytest.raises(ValidationError) as err:
        services.placement_request(version=ModelVersionFactory(), device=DeviceFactory(), reserved_bytes=0)
    assert "reserved_bytes" in err.value.message_dict


def test_move_to_loaded_records_when_and_the_measured_memory() -> None:
    placement = PlacementFactory(state=P.LOADING)

    assert services.placement_move(placement=placement, to=P.LOADED, measured_bytes=15 * GIB)

    placement.refresh_from_db()
    assert (placement.state, placement.measured_bytes) == (P.LOADED, 15 * GIB)
    assert placement.loaded_at is not None
    assert placement.ended_at is None


def test_move_to_failed_records_the_error_and_the_end() -> None:
    placement = PlacementFactory(state=P.LOADING)

    services.placement_move(placement=placement, to=P.FAILED, error="CUDA out of memory")

    placement.refresh_from_db()
    assert (placement.state, placement.error) == (P.FAILED, "CUDA out of memory")
    assert placement.ended_at is not None


def test_move_through_a_whole_life_ends_unloaded() -> None:
    placement = PlacementFactory()

    for state in (P.LOADING, P.LOADED, P.UNLOADING, P.UNLOADED):
        assert services.placement_move(placement=placement, to=state)

    placement.refresh_from_db()
    assert placement.state == P.UNLOADED


def test_move_refuses_a_move_the_machine_forbids() -> None:
    placement = PlacementFactory(state=P.REQUESTED)

    with pytest.raises(InvalidTransition):
        services.placement_move(placement=placement, to=P.LOADED)


def test_move_returns_false_when_another_writer_moved_it_first() -> None:
    placement = PlacementFactory(state=P.LOADING)
    stale = Placement.objects.get(pk=placement.pk)
    services.placement_move(placement=placement, to=P.LOST)

    assert services.placement_move(placement=stale, to=P.LOADED) is False
    placement.refresh_from_db()
    assert placement.state == P.LOST
