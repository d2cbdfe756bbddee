import datetime as dt
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import DeviceFactory, TelemetrySampleFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]
T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_samples_filter_by_device_and_time_range(client_as: Client) -> None:
    device = DeviceFactory()
    inside = TelemetrySampleFactory(device=device, at=T0 + dt.timedelta(minutes=5))
    TelemetrySampleFactory(device=device, at=T0 - dt.timedelta(minutes=5))
    TelemetrySampleFactory(device=device, at=T0 + dt.timedelta(minutes=10))
    TelemetrySampleFactory(at=T0 + dt.timedelta(minutes=5))

    response = client_as(Role.VIEWER).get(
        "/api/v1/telemetry-samples/",
        {"device": device.pk, "since": T0.isoformat(), "until": (T0 + dt.timedelta(minutes=10)).isoformat()},
    )

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [inside.pk]


def test_samples_come_newest_first(client_as: Client) -> None:
    device = DeviceFactory()
    old = TelemetrySampleFactory(device=device, at=T0)
    new = TelemetrySampleFactory(device=device, at=T0 + dt.timedelta(seconds=2))

    response = client_as(Role.VIEWER).get("/api/v1/telemetry-samples/", {"device": device.pk})

    assert [row["id"] for row in response.json()["results"]] == [new.pk, old.pk]


def test_samples_with_a_malformed_time_are_400_naming_the_filter(client_as: Client) -> None:
    response = client_as(Role.VIEWER).get("/api/v1/telemetry-samples/", {"since": "yesterday"})

    assert response.status_code == 400
    assert "since" in response.json()["fields"]


def test_sample_retrieve_returns_the_reading(client_as: Client) -> None:
    sample = TelemetrySampleFactory(power_w=350.5)

    response = client_as(Role.VIEWER).get(f"/api/v1/telemetry-samples/{sample.pk}/")

    assert response.json()["power_w"] == 350.5


def test_placements_list_shows_version_model_and_device(client_as: Client) -> None:
    placement = PlacementFactory(version__model__name="llama", device__simulated=True)

    [row] = client_as(Role.VIEWER).get("/api/v1/placements/").json()["results"]

    assert row["version"]["model"]["name"] == "llama"
    assert row["device"]["id"] == placement.device_id
    assert row["device"]["simulated"] is True
    assert row["state"] == "requested"


def test_placements_filter_active(client_as: Client) -> None:
    active = PlacementFactory(state=PlacementState.LOADED)
    PlacementFactory(state=PlacementState.FAILED)

    response = client_as(Role.VIEWER).get("/api/v1/placements/", {"active": "true"})

    assert [row["id"] for row in response.json()["results"]] == [active.pk]


def test_placements_filter_by_state_and_node(client_as: Client) -> None:
    wanted = PlacementFactory(state=PlacementState.LOADING)
    PlacementFactory(state=PlacementState.LOADING)
    PlacementFactory(device=wanted.device, state=PlacementState.LOST)

    response = client_as(Role.VIEWER).get(
        "/api/v1/placements/", {"state": "loading", "node": wanted.device.node_id}
    )

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_placements_filter_by_registered_model(client_as: Client) -> None:
    wanted = PlacementFactory()
    PlacementFactory()

    response = client_as(Role.VIEWER).get("/api/v1/placements/", {"model": wanted.version.model_id})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_placement_retrieve_of_an_unknown_placement_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get("/api/v1/placements/999999/").status_code == 404
