from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.fleet.domain.kinds import Backend, DeviceKind
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory, TelemetrySampleFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def test_nodes_list_shows_each_node_with_its_devices(client_as: Client) -> None:
    device = DeviceFactory(node=NodeFactory(name="gpu-box-1"), index=0)

    response = client_as(Role.VIEWER).get("/api/v1/nodes/")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["name"] == "gpu-box-1"
    assert [d["uuid"] for d in row["devices"]] == [device.uuid]


def test_nodes_list_refuses_anonymous_callers(client_as: Client) -> None:
    assert client_as(None).get("/api/v1/nodes/").status_code in {401, 403}


def test_nodes_filter_by_state_and_backend(client_as: Client) -> None:
    wanted = NodeFactory(state=NodeState.DRAINING, backend=Backend.SIM)
    NodeFactory(state=NodeState.DRAINING, backend=Backend.NVML)
    NodeFactory(state=NodeState.ONLINE, backend=Backend.SIM)

    response = client_as(Role.VIEWER).get("/api/v1/nodes/", {"state": "draining", "backend": "sim"})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_node_retrieve_of_an_unknown_node_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get("/api/v1/nodes/999999/").status_code == 404


def test_nodes_cannot_be_written_through_the_api_even_by_an_admin(client_as: Client) -> None:
    response = client_as(Role.ADMIN).post("/api/v1/nodes/", {"name": "x", "backend": "sim"}, format="json")

    assert response.status_code == 405


def test_devices_say_whether_they_are_simulated(client_as: Client) -> None:
    DeviceFactory(simulated=True)

    [row] = client_as(Role.VIEWER).get("/api/v1/devices/").json()["results"]

    assert row["simulated"] is True


def test_device_shows_memory_reserved_by_active_placements_only(client_as: Client) -> None:
    device = DeviceFactory()
    PlacementFactory(device=device, state=PlacementState.LOADED, reserved_bytes=10 * GIB)
    PlacementFactory(device=device, state=PlacementState.LOADING, reserved_bytes=5 * GIB)
    PlacementFactory(device=device, state=PlacementState.UNLOADED, reserved_bytes=30 * GIB)

    row = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/").json()

    assert (row["reserved_bytes"], row["active_placements"]) == (15 * GIB, 2)


def test_device_shows_its_latest_reading(client_as: Client) -> None:
    device = DeviceFactory()
    older = TelemetrySampleFactory(device=device, gpu_util=10.0)
    TelemetrySampleFactory(device=device, gpu_util=90.0, at=older.at.replace(year=older.at.year + 1))

    row = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/").json()

    assert row["last_gpu_util"] == 90.0


def test_devices_filter_by_kind_health_and_simulated(client_as: Client) -> None:
    wanted = DeviceFactory(kind=DeviceKind.CPU, health=DeviceHealth.DEGRADED, simulated=True)
    DeviceFactory(kind=DeviceKind.CPU, health=DeviceHealth.DEGRADED, simulated=False)
    DeviceFactory(kind=DeviceKind.GPU, health=DeviceHealth.DEGRADED, simulated=True)

    response = client_as(Role.VIEWER).get(
        "/api/v1/devices/", {"kind": "cpu", "health": "degraded", "simulated": "true"}
    )

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_devices_filter_by_node(client_as: Client) -> None:
    wanted = DeviceFactory()
    DeviceFactory()

    response = client_as(Role.VIEWER).get("/api/v1/devices/", {"node": wanted.node_id})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_device_retrieve_of_an_unknown_device_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get("/api/v1/devices/999999/").status_code == 404


def test_devices_list_with_an_api_key_works(key_client: Callable[..., APIClient]) -> None:
    DeviceFactory()

    assert key_client(Role.VIEWER).get("/api/v1/devices/").status_code == 200
