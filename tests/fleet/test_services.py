import pytest
from django.utils import timezone

from apps.core.domain.statemachine import InvalidTransition
from apps.fleet import services
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import DeviceFactory, NodeFactory

pytestmark = pytest.mark.django_db

P = PlacementState


def test_device_set_health_records_the_new_health() -> None:
    device = DeviceFactory()

    assert services.device_set_health(device=device, health=DeviceHealth.DEGRADED)

    device.refresh_from_db()
    assert device.health == DeviceHealth.DEGRADED


def test_device_set_health_refuses_unhealthy_straight_to_healthy() -> None:
    device = DeviceFactory(health=DeviceHealth.UNHEALTHY)

    with pytest.raises(InvalidTransition):
        services.device_set_health(device=device, health=DeviceHealth.HEALTHY)


def test_node_set_state_drains_an_online_node() -> None:
    node = NodeFactory()

    assert services.node_set_state(node=node, state=NodeState.DRAINING)

    node.refresh_from_db()
    assert node.state == NodeState.DRAINING


def test_node_devices_offered_retires_only_that_node_devices_it_no_longer_offers() -> None:
    node = NodeFactory()
    kept, dropped = DeviceFactory(node=node), DeviceFactory(node=node)
    elsewhere = DeviceFactory()

    retired = services.node_devices_offered(node=node, offered=[kept])

    assert retired == [dropped]
    dropped.refresh_from_db()
    kept.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (dropped.retired, kept.retired, elsewhere.retired) == (True, False, False)


def test_node_devices_offered_brings_a_retired_device_back() -> None:
    device = DeviceFactory(retired_at=timezone.now())

    assert services.node_devices_offered(node=device.node, offered=[device]) == []

    assert device.retired_at is None
    device.refresh_from_db()
    assert device.retired_at is None
