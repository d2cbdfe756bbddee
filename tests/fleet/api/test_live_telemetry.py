"""The telemetry snapshot and a device's history over the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.fleet import telemetry
from tests.fleet.factories import DeviceFactory, TelemetrySampleFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
Client = Callable[[Role | None], APIClient]


def publish(node: str, device_ids: list[int]) -> None:
    devices = [{"id": i, "index": n, "simulated": False, "gpu_util": 5.0} for n, i in enumerate(device_ids)]
    telemetry.publish(
        redis_client(),
        telemetry.telemetry_message(
            node=node, node_id=1, at=NOW.timestamp(), backend="nvml", devices=devices
        ),
    )


def test_the_snapshot_holds_every_nodes_latest_message_with_its_seq(client_as: Client) -> None:
    publish("a", [1])
    publish("a", [1])
    publish("b", [2, 3])

    response = client_as(Role.VIEWER).get("/api/v1/telemetry/latest/")

    assert response.status_code == 200
    nodes = response.json()["nodes"]
    assert [(n["node"], n["seq"], len(n["devices"])) for n in nodes] == [("a", 2, 1), ("b", 1, 2)]


def test_the_snapshot_can_be_cut_to_some_devices(client_as: Client) -> None:
    publish("a", [1])
    publish("b", [2, 3])

    response = client_as(Role.VIEWER).get("/api/v1/telemetry/latest/?devices=3")

    assert [(n["node"], [d["id"] for d in n["devices"]]) for n in response.json()["nodes"]] == [("b", [3])]


def test_the_snapshot_refuses_devices_that_are_not_ids(client_as: Client) -> None:
    response = client_as(Role.VIEWER).get("/api/v1/telemetry/latest/?devices=gpu0")

    assert response.status_code == 400
    assert "devices" in response.json()["fields"]


def test_the_snapshot_needs_a_login(client_as: Client) -> None:
    assert client_as(None).get("/api/v1/telemetry/latest/").status_code in (401, 403)


def test_history_averages_a_range_into_buckets(client_as: Client) -> None:
    device = DeviceFactory()
    other = DeviceFactory()
    for seconds, util in [(-50, 10.0), (-40, 30.0), (-5, 70.0)]:
        TelemetrySampleFactory(
            device=device, at=NOW + timedelta(seconds=seconds), gpu_util=util, temperature_c=None
        )
    TelemetrySampleFactory(device=other, at=NOW - timedelta(seconds=30), gpu_util=99.0)
    TelemetrySampleFactory(device=device, at=NOW - timedelta(hours=2), gpu_util=1.0)

    with time_machine.travel(NOW, tick=False):
        response = client_as(Role.VIEWER).get(
            f"/api/v1/devices/{device.pk}/history/?range=1h&metrics=gpu_util,temperature_c"
        )

    assert response.status_code == 200
    body = response.json()
    assert body["bucket_s"] == 10
    assert [value for _, value in body["metrics"]["gpu_util"]] == [10.0, 30.0, 70.0]
    assert body["metrics"]["temperature_c"] == []
    assert body["metrics"]["gpu_util"][0][0] == "2026-11-23T11:59:10Z"


def test_history_over_a_week_uses_half_hour_buckets(client_as: Client) -> None:
    device = DeviceFactory()

    response = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/history/?range=7d")

    assert response.json()["bucket_s"] == 1800
    assert set(response.json()["metrics"]) == {
        "gpu_util",
        "mem_util",
        "mem_used_bytes",
        "temperature_c",
        "power_w",
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("range=2h", "range"),
        ("", "range"),
        ("range=1h&metrics=fan", "metrics"),
        ("start=2026-11-23T12:00:00Z&end=2026-11-23T11:00:00Z", "start"),
        ("start=2026-01-01T00:00:00Z", "start"),
        ("range=1h&start=2026-11-23T11:00:00Z", "range"),
    ],
)
def test_history_names_the_field_it_cannot_use(client_as: Client, query: str, field: str) -> None:
    device = DeviceFactory()

    response = client_as(Role.VIEWER).get(f"/api/v1/devices/{device.pk}/history/?{query}")

    assert response.status_code == 400
    assert field in response.json()["fields"]
