import pytest

from apps.fleet import selectors
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import DeviceFactory, NodeFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db


def _card(label: str) -> dict:
    return next(card for card in selectors.overview_cards() if card["label"] == label)


def test_gpus_card_counts_gpus_and_says_how_many_are_healthy_and_simulated() -> None:
    DeviceFactory(simulated=True)
    DeviceFactory(health=DeviceHealth.DEGRADED)

    card = _card("GPUs")

    assert card["value"] == 2
    assert card["hint"] == "1 healthy · 1 simulated"


def test_gpus_card_with_no_devices_says_no_worker_registered() -> None:
    assert _card("GPUs")["hint"] == "no worker has registered yet"


def test_nodes_card_counts_online_nodes() -> None:
    NodeFactory()
    NodeFactory(state=NodeState.OFFLINE)

    assert (_card("Nodes")["value"], _card("Nodes")["hint"]) == (2, "1 online")


def test_a_devices_held_memory_counts_what_a_load_measured_rather_than_what_it_reserved() -> None:
    device = DeviceFactory()
    PlacementFactory(device=device, state=PlacementState.LOADED, reserved_bytes=512, measured_bytes=7)
    PlacementFactory(device=device, state=PlacementState.REQUESTED, reserved_bytes=100)
    PlacementFactory(device=device, state=PlacementState.UNLOADED, reserved_bytes=1000, measured_bytes=10)

    assert selectors.device_list().get(pk=device.pk).reserved_bytes == 107
