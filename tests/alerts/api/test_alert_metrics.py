"""/api/v1/alert-metrics/: the metrics a rule may watch, with their labels and current values."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.alerts.domain.catalog import CATALOG
from apps.core.domain.roles import Role
from tests.fleet.test_metrics import send, sim_gpu
from tests.procs import RedisServer

pytestmark = pytest.mark.django_db

METRICS = "/api/v1/alert-metrics/"
Client = Callable[[Role | None], APIClient]


def test_the_catalogue_lists_every_metric_with_its_labels_and_unit(client_as: Client) -> None:
    body = client_as(Role.VIEWER).get(METRICS).json()

    assert [m["name"] for m in body] == list(CATALOG)
    temp = next(m for m in body if m["name"] == "DCGM_FI_DEV_GPU_TEMP")
    assert (temp["unit"], temp["group"], temp["history"]) == ("°C", "Devices", True)
    assert "node" in temp["labels"]
    assert "values" not in temp


def test_with_values_each_label_has_its_current_values(client_as: Client, redis_server: RedisServer) -> None:
    send(redis_server, [sim_gpu(0), sim_gpu(1)])

    body = client_as(Role.VIEWER).get(METRICS, {"values": "1"}).json()

    temp = next(m for m in body if m["name"] == "DCGM_FI_DEV_GPU_TEMP")
    assert temp["values"]["device"] == ["gpu0", "gpu1"]


def test_one_metric_comes_with_its_values(client_as: Client) -> None:
    body = client_as(Role.VIEWER).get(f"{METRICS}moc_node_heartbeat_age_seconds/").json()

    assert (body["name"], body["labels"]) == ("moc_node_heartbeat_age_seconds", ["node"])
    assert "values" in body


def test_an_unknown_metric_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(f"{METRICS}gpu_temp/").status_code == 404


def test_anonymous_callers_read_nothing(client_as: Client) -> None:
    assert client_as(None).get(METRICS).status_code in {401, 403}
