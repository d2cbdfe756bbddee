"""Retired devices in the API: said so, and a filter to find them or leave them out."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from tests.fleet.factories import DeviceFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def test_a_device_says_whether_and_since_when_it_is_retired(client_as: Client) -> None:
    since = timezone.now()
    retired = DeviceFactory(retired_at=since)
    offered = DeviceFactory()

    rows = {r["id"]: r for r in client_as(Role.VIEWER).get("/api/v1/devices/").json()["results"]}

    assert rows[retired.pk]["retired"] is True
    assert rows[retired.pk]["retired_at"] == since.isoformat().replace("+00:00", "Z")
    assert (rows[offered.pk]["retired"], rows[offered.pk]["retired_at"]) == (False, None)


def test_devices_filter_by_retired(client_as: Client) -> None:
    retired = DeviceFactory(retired_at=timezone.now())
    offered = DeviceFactory()
    client = client_as(Role.VIEWER)

    only_retired = client.get("/api/v1/devices/", {"retired": "true"}).json()["results"]
    only_offered = client.get("/api/v1/devices/", {"retired": "false"}).json()["results"]

    assert [r["id"] for r in only_retired] == [retired.pk]
    assert [r["id"] for r in only_offered] == [offered.pk]


def test_nodes_and_placements_name_a_retired_device_as_such(client_as: Client) -> None:
    device = DeviceFactory(retired_at=timezone.now())
    PlacementFactory(device=device)
    client = client_as(Role.VIEWER)

    (node,) = client.get("/api/v1/nodes/").json()["results"]
    (placement,) = client.get("/api/v1/placements/").json()["results"]

    assert node["devices"][0]["retired"] is True
    assert placement["device"]["retired"] is True
