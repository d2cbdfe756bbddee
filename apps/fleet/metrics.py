"""The fleet's Prometheus metrics: every device's latest figures, and what the sampler and the
websocket relay did.

Device figures are read from Redis at scrape time (each node's latest telemetry message), so
any web process answers for every node, however many there are. Where NVIDIA's DCGM exporter
has a series for a figure, it has DCGM's name and unit, so existing GPU dashboards and alert
rules work on MOC's nodes; the mapping is in docs/OPERATIONS.md, "GPU metrics".

The process metrics below are recorded by the agent (Celery workers) and the relay (websocket
processes); with PROMETHEUS_MULTIPROC_DIR set they are written to files there and merged by
/metrics like the web process's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.apps import apps
from django.conf import settings
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from apps.core import redis_clients
from apps.fleet import telemetry
from apps.fleet.domain.states import DeviceHealth, NodeState

MIB = 1024 * 1024
DEVICE_LABELS = ("node", "gpu", "device", "uuid", "model_name", "simulated")


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of a device in the telemetry message, exported as one gauge."""

    name: str
    help: str
    field: str
    scale: float = 1.0


# DCGM's names and units. Its ECC totals count errors since the driver was loaded and reset
# with it, so they are gauges here: a counter must end in _total, which DCGM's names do in
# capitals only. PCIe traffic is DCGM's profiling pair (bytes per second): DCGM deprecated
# its NVML-derived PCIE_*_THROUGHPUT fields in their favour.
FIGURES: tuple[Figure, ...] = (
    Figure("DCGM_FI_DEV_GPU_UTIL", "Share of time a kernel ran on the device (%).", "gpu_util"),
    Figure("DCGM_FI_DEV_MEM_COPY_UTIL", "Share of time device memory was read or written (%).", "mem_util"),
    Figure("DCGM_FI_DEV_FB_USED", "Device memory in use (MiB).", "mem_used_bytes", 1 / MIB),
    Figure("DCGM_FI_DEV_FB_FREE", "Device memory free (MiB).", "mem_free_bytes", 1 / MIB),
    Figure("DCGM_FI_DEV_GPU_TEMP", "Device temperature (degrees C).", "temperature_c"),
    Figure("DCGM_FI_DEV_POWER_USAGE", "Power draw (W).", "power_w"),
    Figure("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "Power limit the driver enforces (W).", "power_limit_w"),
    Figure("DCGM_FI_DEV_SM_CLOCK", "Streaming multiprocessor clock (MHz).", "sm_clock_mhz"),
    Figure("DCGM_FI_DEV_MEM_CLOCK", "Memory clock (MHz).", "mem_clock_mhz"),
    Figure("DCGM_FI_DEV_FAN_SPEED", "Fan speed (% of its maximum).", "fan_pct"),
    Figure("DCGM_FI_PROF_PCIE_TX_BYTES", "PCIe traffic sent by the device (bytes/s).", "pcie_tx_bytes_s"),
    Figure("DCGM_FI_PROF_PCIE_RX_BYTES", "PCIe traffic received by the device (bytes/s).", "pcie_rx_bytes_s"),
    Figure(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "Corrected (single-bit) ECC errors since the driver was loaded.",
        "ecc_corrected",
    ),
    Figure(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Uncorrectable (double-bit) ECC errors since the driver was loaded.",
        "ecc_uncorrected",
    ),
    Figure("moc_device_memory_total_bytes", "Device memory in all (bytes).", "mem_total_bytes"),
)


def stale_after_s() -> float:
    """How old a node's latest message may be before its devices leave /metrics.

    Prometheus then marks their series stale by their absence, instead of repeating the last
    figures of a node that stopped sending.
    """
    return max(30.0, 3 * settings.MOC_TELEMETRY_INTERVAL_S)


def device_families(messages: Iterable[Mapping[str, Any]], *, now: float, stale_after: float) -> list[Metric]:
    """The device gauges of every node whose latest message is fresh; families with no sample are left out."""
    figures = {f.name: GaugeMetricFamily(f.name, f.help, labels=DEVICE_LABELS) for f in FIGURES}
    health = GaugeMetricFamily(
        "moc_device_health",
        "The device's health: 1 on the series of its current state, 0 on the others.",
        labels=[*DEVICE_LABELS, "health"],
    )
    age = GaugeMetricFamily(
        "moc_device_telemetry_age_seconds", "Seconds since the device was last sampled.", labels=DEVICE_LABELS
    )
    processes = GaugeMetricFamily(
        "moc_device_processes", "Processes holding memory on the device.", labels=DEVICE_LABELS
    )
    used_ratio = GaugeMetricFamily(
        "moc_device_memory_used_ratio", "Share of the device's memory in use (0-1).", labels=DEVICE_LABELS
    )
    for message in messages:
        # A newer worker's schema, met during a rolling upgrade, is left to the newer web processes.
        if message.get("v") != telemetry.SCHEMA_VERSION or now - message["at"] > stale_after:
            continue
        for device in message["devices"]:
            labels = _labels(message["node"], device)
            for figure in FIGURES:
                value = device.get(figure.field)
                if value is not None:
                    figures[figure.name].add_metric(labels, value * figure.scale)
            for state in DeviceHealth:
                health.add_metric([*labels, state.value], 1.0 if device.get("health") == state else 0.0)
            # Clocks of two nodes may disagree by a little; an age below zero would only confuse.
            age.add_metric(labels, max(0.0, now - message["at"]))
            if device.get("processes") is not None:
                processes.add_metric(labels, len(device["processes"]))
            if device.get("mem_used_bytes") is not None and device.get("mem_total_bytes"):
                used_ratio.add_metric(labels, device["mem_used_bytes"] / device["mem_total_bytes"])
    families = [*figures.values(), health, age, processes, used_ratio]
    return [family for family in families if family.samples]


def device_labels(node: str, device: Mapping[str, Any]) -> dict[str, str]:
    """A device's labels on /metrics, by name; `device` has the telemetry message's index, kind,
    uuid, name and simulated (stored readings are labelled with it as the live ones are)."""
    return dict(zip(DEVICE_LABELS, _labels(node, device), strict=True))


def _labels(node: str, device: Mapping[str, Any]) -> list[str]:
    return [
        node,
        str(device["index"]),
        f"{device['kind']}{device['index']}",
        device["uuid"],
        device["name"],
        "true" if device["simulated"] else "false",
    ]


def heartbeat_families(now: datetime) -> list[Metric]:
    """Seconds since each node's last heartbeat (from the database), for the nodes MOC still counts
    as online or draining.

    A node the sweep marked offline (MOC_NODE_OFFLINE_AFTER_S) leaves the gauge: from then on it is
    a lost node (the node_offline signal, the NodeLost alert), not a late one, so a rule on the age
    (NodeDown) resolves instead of firing beside NodeLost for ever, a retired machine included.
    """
    age = GaugeMetricFamily(
        "moc_node_heartbeat_age_seconds",
        "Seconds since the node's workers last sent a heartbeat (nodes not marked offline).",
        labels=["node"],
    )
    # The model is looked up when called: this module is imported by processes that record the
    # counters below before Django's apps are loaded (the sampler's and relay's metrics files).
    nodes = (
        apps.get_model("fleet", "Node")
        .objects.exclude(last_heartbeat_at=None)
        .exclude(state=NodeState.OFFLINE)
    )
    for name, at in nodes.values_list("name", "last_heartbeat_at"):
        age.add_metric([name], max(0.0, (now - at).total_seconds()))
    return [age] if age.samples else []


class FleetCollector(Collector):
    """Every node's devices as their latest telemetry message in Redis says, read at scrape time,
    and each node's heartbeat age from the database."""

    def collect(self) -> Iterator[Metric]:
        yield from heartbeat_families(timezone.now())
        try:
            with redis_clients.redis_client(timeout=1.0) as client:
                messages = telemetry.latest(client)
        except redis.RedisError:
            # /readyz reports Redis; /metrics still answers with everything it can.
            return
        yield from device_families(messages, now=time.time(), stale_after=stale_after_s())


# Recorded by the agent in the Celery workers (one sampler per node).
TELEMETRY_SAMPLES = Counter(
    "moc_telemetry_samples", "Sampling rounds of a node's devices (each reads every device once)."
)
TELEMETRY_SAMPLE_SECONDS = Histogram(
    "moc_telemetry_sample_duration_seconds",
    "Time one sampling round took, reading every device of the node.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
TELEMETRY_PUBLISH_ERRORS = Counter(
    "moc_telemetry_publish_errors", "Telemetry messages that could not be published to Redis."
)
TELEMETRY_STORED_ROWS = Counter("moc_telemetry_stored_rows", "Telemetry sample rows written to the database.")

# Recorded by the relay in the websocket processes; the gauge adds up the live processes' clients.
WS_CLIENTS = Gauge(
    "moc_ws_clients", "Open websocket connections, by stream.", ["stream"], multiprocess_mode="livesum"
)
WS_MESSAGES_SENT = Counter(
    "moc_ws_messages_sent",
    "Messages handed to websocket clients' send queues, by stream (counted per broadcast, not per send).",
    ["stream"],
)
WS_MESSAGES_DROPPED = Counter(
    "moc_ws_messages_dropped",
    "Messages not sent to websocket clients that read too slowly (each was told to resync), by stream.",
    ["stream"],
)
