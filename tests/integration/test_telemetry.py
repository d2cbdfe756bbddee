"""Live telemetry end to end: a real device worker with simulated GPUs samples and publishes,
Redis carries it, a real uvicorn relays it to a real websocket client; a worker killed
outright leaves its node to be swept offline."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone
from websockets.sync.client import ClientConnection, connect

from apps.fleet import registration
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.fleet.models import Device, Node
from tests.procs import Process, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-node"


def session_cookie(user: object) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def start_device_worker(start_worker: Callable[..., Process], **env: str) -> Process:
    worker = start_worker(
        queues=f"gpu.{NODE}.0",
        pool="threads",
        name="gpu0",
        MOC_DEVICES="sim:2x24GiB",
        MOC_NODE_NAME=NODE,
        MOC_NODE_HEARTBEAT_S="1",
        MOC_NODE_OFFLINE_AFTER_S="3",
        **env,
    )
    wait_until(lambda: Device.objects.filter(node__name=NODE).count() == 2, 30, "the worker to register")
    return worker


def telemetry_messages(ws: ClientConnection, count: int) -> list[dict]:
    messages: list[dict] = []
    while len(messages) < count:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == "telemetry":
            messages.append(message)
    return messages


def test_a_device_worker_streams_its_nodes_telemetry_to_a_websocket_client(
    start_worker: Callable[..., Process], asgi_server: str, viewer: object
) -> None:
    start_device_worker(start_worker)
    cookie = session_cookie(viewer)
    ids = sorted(Device.objects.filter(node__name=NODE).values_list("pk", flat=True))

    url = asgi_server.replace("http://", "ws://") + "/ws/telemetry/"
    with connect(
        url, origin="http://127.0.0.1", additional_headers={"Cookie": cookie}, open_timeout=10
    ) as ws:
        messages = telemetry_messages(ws, 3)
    snapshot = httpx.get(f"{asgi_server}/api/v1/telemetry/latest/", headers={"Cookie": cookie}, timeout=10)

    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + 3))  # one message per sample, none missing
    assert 0.5 < messages[2]["at"] - messages[1]["at"] < 1.5  # at 1 Hz
    assert {m["node"] for m in messages} == {NODE}
    assert [d["id"] for d in messages[-1]["devices"]] == ids
    assert all(d["simulated"] for m in messages for d in m["devices"])
    assert snapshot.status_code == 200
    assert snapshot.json()["nodes"][0]["seq"] >= seqs[-1]


def test_a_killed_worker_leaves_its_node_to_go_offline_with_its_devices(
    start_worker: Callable[..., Process], asgi_server: str, viewer: object
) -> None:
    worker = start_device_worker(start_worker)
    url = asgi_server.replace("http://", "ws://") + "/ws/telemetry/"
    headers = {"Cookie": session_cookie(viewer)}

    with connect(url, origin="http://127.0.0.1", additional_headers=headers, open_timeout=10) as ws:
        telemetry_messages(ws, 1)
        worker.kill()
        with override_settings(MOC_NODE_OFFLINE_AFTER_S=3):
            # the beat task's body, at a time past the grace period
            went = registration.nodes_mark_offline(now=timezone.now() + timedelta(seconds=4))
        notice = json.loads(ws.recv(timeout=10))
        while notice["type"] != "node.state":
            notice = json.loads(ws.recv(timeout=10))

    assert went == [NODE]
    assert Node.objects.get(name=NODE).state == NodeState.OFFLINE
    assert set(Device.objects.filter(node__name=NODE).values_list("health", flat=True)) == {
        DeviceHealth.UNAVAILABLE
    }
    assert (notice["node"], notice["state"]) == (NODE, "offline")


def test_a_device_worker_serves_its_own_sampling_metrics_when_given_a_port(
    start_worker: Callable[..., Process], tmp_path: Path
) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    start_device_worker(
        start_worker, MOC_WORKER_METRICS_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    )

    def sampled() -> bool:
        text = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
        return any(
            line.startswith("moc_telemetry_samples_total") and not line.endswith(" 0.0")
            for line in text.splitlines()
        )

    wait_until(sampled, 20, "the worker's metrics to count samples")
