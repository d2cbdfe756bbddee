"""/metrics for the fleet: devices under DCGM's names read from Redis at scrape time, and the
sampler's and relay's process metrics merged across processes; checked by promtool itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from apps.fleet import telemetry
from tests.procs import ROOT, RedisServer, free_port

TOKEN = "scrape-me"
PROMTOOL = shutil.which("promtool")

GPU0 = {
    "node": "gpu-box-1",
    "gpu": "0",
    "device": "gpu0",
    "uuid": "SIM-5c1e-0",
    "model_name": "Simulated GPU 24 GiB",
    "simulated": "true",
}
# What a device that could not be read reports: no figure at all.
UNREADABLE = dict.fromkeys(
    (
        "gpu_util",
        "mem_util",
        "mem_used_bytes",
        "mem_free_bytes",
        "temperature_c",
        "power_w",
        "power_limit_w",
        "sm_clock_mhz",
        "mem_clock_mhz",
        "fan_pct",
        "pcie_tx_bytes_s",
        "pcie_rx_bytes_s",
        "ecc_corrected",
        "ecc_uncorrected",
    )
)


def sim_gpu(index: int = 0, **figures: Any) -> dict[str, Any]:
    """A simulated GPU as the agent puts it in a telemetry message (docs/TELEMETRY.md)."""
    device = {
        "id": 12 + index,
        "index": index,
        "uuid": f"SIM-5c1e-{index}",
        "name": "Simulated GPU 24 GiB",
        "kind": "gpu",
        "simulated": True,
        "health": "healthy",
        "error": "",
        "gpu_util": 37.0,
        "mem_util": 12.0,
        "mem_total_bytes": 25769803776,
        "mem_used_bytes": 5368709120,
        "mem_free_bytes": 20401094656,
        "temperature_c": 51.5,
        "power_w": 142.0,
        "power_limit_w": 300.0,
        "sm_clock_mhz": 1410,
        "mem_clock_mhz": 1215,
        "fan_pct": None,
        "pcie_tx_bytes_s": 2000000,
        "pcie_rx_bytes_s": 3000000,
        "ecc_corrected": 2,
        "ecc_uncorrected": 0,
        "processes": [{"pid": 4242, "used_bytes": 5100273664, "name": "celery"}],
    }
    device.update(figures)
    return device


def send(
    redis_server: RedisServer,
    devices: list[dict[str, Any]],
    *,
    node: str = "gpu-box-1",
    backend: str = "sim",
    age_s: float = 0.0,
) -> None:
    message = telemetry.telemetry_message(
        node=node, node_id=4, at=time.time() - age_s, backend=backend, devices=devices
    )
    telemetry.publish(redis_server.client(), message)


def samples(text: str, name: str, **labels: str) -> list[Sample]:
    """The samples of `name` whose labels include `labels`."""
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def value(text: str, name: str, **labels: str) -> float:
    (sample,) = samples(text, name, **labels)
    return sample.value


@pytest.fixture
def scrape(settings: Any, db: None) -> Callable[[], str]:
    """GET /metrics as Prometheus does, with the metrics token."""
    settings.MOC_METRICS_TOKEN = TOKEN
    settings.MOC_TELEMETRY_INTERVAL_S = 1.0

    def get() -> str:
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        return response.content.decode()

    return get


@pytest.fixture
def worker_metrics(tmp_path: Path, settings: Any) -> Path:
    """A metrics folder written by two other processes: a sampler and a websocket relay each."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    record = (
        "from apps.fleet import metrics\n"
        "metrics.TELEMETRY_SAMPLES.inc()\n"
        "metrics.TELEMETRY_SAMPLE_SECONDS.observe(0.004)\n"
        "metrics.TELEMETRY_STORED_ROWS.inc(8)\n"
        "metrics.WS_CLIENTS.labels(stream='telemetry').inc(3)\n"
        "metrics.WS_MESSAGES_SENT.labels(stream='telemetry').inc(30)\n"
        "metrics.WS_MESSAGES_DROPPED.labels(stream='telemetry').inc()\n"
    )
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "DJANGO_SETTINGS_MODULE": "moc_site.settings",
    }
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], cwd=ROOT, env=env, check=True, timeout=60)
    settings.PROMETHEUS_MULTIPROC_DIR = str(folder)
    return folder


def test_each_gpu_is_exported_under_dcgm_names_with_its_node_and_device_labels(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0)])

    text = scrape()

    (sample,) = samples(text, "DCGM_FI_DEV_GPU_UTIL")
    assert sample.labels == GPU0
    assert sample.value == 37.0
    assert value(text, "DCGM_FI_DEV_MEM_COPY_UTIL", **GPU0) == 12.0
    assert value(text, "DCGM_FI_DEV_GPU_TEMP", **GPU0) == 51.5
    assert value(text, "DCGM_FI_DEV_POWER_USAGE", **GPU0) == 142.0
    assert value(text, "DCGM_FI_DEV_ENFORCED_POWER_LIMIT", **GPU0) == 300.0
    assert value(text, "DCGM_FI_DEV_SM_CLOCK", **GPU0) == 1410
    assert value(text, "DCGM_FI_DEV_MEM_CLOCK", **GPU0) == 1215
    assert value(text, "DCGM_FI_PROF_PCIE_TX_BYTES", **GPU0) == 2000000
    assert value(text, "DCGM_FI_PROF_PCIE_RX_BYTES", **GPU0) == 3000000
    assert value(text, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", **GPU0) == 2
    assert value(text, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", **GPU0) == 0


def test_frame_buffer_is_in_mib_as_dcgm_reports_it_and_total_memory_in_bytes(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0)])

    text = scrape()

    assert value(text, "DCGM_FI_DEV_FB_USED", **GPU0) == 5120.0
    assert value(text, "DCGM_FI_DEV_FB_FREE", **GPU0) == 19456.0
    assert value(text, "moc_device_memory_total_bytes", **GPU0) == 25769803776


def test_a_figure_the_device_cannot_report_has_no_series_rather_than_zero(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0, fan_pct=None, pcie_tx_bytes_s=None), sim_gpu(1, fan_pct=40.0)])

    text = scrape()

    assert [s.labels["device"] for s in samples(text, "DCGM_FI_DEV_FAN_SPEED")] == ["gpu1"]
    assert [s.labels["device"] for s in samples(text, "DCGM_FI_PROF_PCIE_TX_BYTES")] == ["gpu1"]
    assert value(text, "DCGM_FI_DEV_FAN_SPEED", device="gpu1") == 40.0


def test_health_is_a_state_set_with_one_on_the_current_state(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0), sim_gpu(1, health="unhealthy", error="GPU is lost", **UNREADABLE)])

    text = scrape()

    states = {s.labels["health"]: s.value for s in samples(text, "moc_device_health", device="gpu1")}
    assert states == {"healthy": 0.0, "degraded": 0.0, "unhealthy": 1.0, "unavailable": 0.0}
    assert value(text, "moc_device_health", device="gpu0", health="healthy") == 1.0
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith("DCGM_") and 'device="gpu1"' in line]
    assert [line for line in lines if line.startswith("DCGM_") and 'device="gpu0"' in line]


def test_telemetry_age_and_processes_on_the_device_are_reported(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0)], age_s=5.0)

    text = scrape()

    assert 5.0 <= value(text, "moc_device_telemetry_age_seconds", **GPU0) < 7.0
    assert value(text, "moc_device_processes", **GPU0) == 1


def test_a_cpu_node_offers_its_cpu_as_device_cpu0_labelled_real(
    redis_server: RedisServer, scrape: Callable[[], str]
) -> None:
    cpu = sim_gpu(0, kind="cpu", uuid="CPU-9f1", name="AMD EPYC 7B13", simulated=False, power_w=None)
    send(redis_server, [cpu], node="cpu-box", backend="cpu")

    text = scrape()

    (sample,) = samples(text, "DCGM_FI_DEV_GPU_UTIL", node="cpu-box")
    assert sample.labels["device"] == "cpu0"
    assert sample.labels["simulated"] == "false"
    assert sample.labels["model_name"] == "AMD EPYC 7B13"
    assert samples(text, "DCGM_FI_DEV_POWER_USAGE", node="cpu-box") == []


@pytest.mark.parametrize(
    ("interval_s", "age_s", "shown"),
    [(1.0, 25.0, True), (1.0, 35.0, False), (20.0, 55.0, True), (20.0, 65.0, False)],
)
def test_a_node_whose_latest_message_is_older_than_the_staleness_limit_leaves_the_metrics(
    redis_server: RedisServer,
    scrape: Callable[[], str],
    settings: Any,
    interval_s: float,
    age_s: float,
    shown: bool,
) -> None:
    send(redis_server, [sim_gpu(0)], node="quiet-box", age_s=age_s)
    send(redis_server, [sim_gpu(0)], node="busy-box")
    settings.MOC_TELEMETRY_INTERVAL_S = interval_s

    text = scrape()

    nodes = {s.labels["node"] for s in samples(text, "moc_device_telemetry_age_seconds")}
    assert nodes == ({"quiet-box", "busy-box"} if shown else {"busy-box"})
    assert bool(samples(text, "moc_device_health", node="quiet-box")) is shown


def test_metrics_still_answer_without_device_series_when_redis_is_down(
    redis_server: RedisServer, scrape: Callable[[], str], settings: Any
) -> None:
    send(redis_server, [sim_gpu(0)])
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    text = scrape()

    assert samples(text, "moc_build_info")
    assert "DCGM_FI_" not in text
    assert "moc_device_" not in text


def test_sampler_and_relay_metrics_are_added_up_across_processes(
    worker_metrics: Path, scrape: Callable[[], str]
) -> None:
    text = scrape()

    assert value(text, "moc_telemetry_samples_total") == 2
    assert value(text, "moc_telemetry_sample_duration_seconds_count") == 2
    assert value(text, "moc_telemetry_publish_errors_total") == 0
    assert value(text, "moc_telemetry_stored_rows_total") == 16
    assert value(text, "moc_ws_clients", stream="telemetry") == 6
    assert value(text, "moc_ws_messages_sent_total", stream="telemetry") == 60
    assert value(text, "moc_ws_messages_dropped_total", stream="telemetry") == 2


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package prometheus); scripts/test.sh installs it",
)
def test_promtool_accepts_the_whole_metrics_output(
    redis_server: RedisServer, worker_metrics: Path, scrape: Callable[[], str]
) -> None:
    send(redis_server, [sim_gpu(0), sim_gpu(1, fan_pct=40.0, health="degraded")])
    cpu = sim_gpu(0, kind="cpu", uuid="CPU-9f1", name="CPU", simulated=False, power_w=None, processes=None)
    send(redis_server, [cpu], node="cpu-box", backend="cpu")
    text = scrape()
    assert "DCGM_FI_DEV_GPU_UTIL" in text
    assert "moc_ws_clients" in text

    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
