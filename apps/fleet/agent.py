"""The fleet agent: runs inside each device worker and speaks for its node.

On worker start it registers the node and its devices (through the backend MOC_DEVICES
chooses), then, in a thread: heartbeats the node row, and, in exactly one worker per node
(a Redis lock), samples every device each MOC_TELEMETRY_INTERVAL_S, publishes one message
for the node, stores each window's means, and moves device health when readings call for
it. Nothing here may kill the worker: every failure is logged and the next tick tries again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections

from apps.core.domain.queues import node_device_queues
from apps.core.redis_clients import redis_client
from apps.fleet import holdings, metrics, registration, retention, services, telemetry
from apps.fleet.devices.base import DeviceBackend, DeviceReading, SimLoad
from apps.fleet.devices.select import open_backend
from apps.fleet.domain.health import assess, next_step
from apps.fleet.domain.history import SampleWindow
from apps.fleet.domain.states import NodeState
from apps.fleet.models import Device, Node

log = logging.getLogger(__name__)

LOCK_PREFIX = "moc:fleet:sampler:"
# Renew only if we still hold it; release likewise: never take over another's lock.
_IF_OURS = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call({}) end return 0"
_RENEW = _IF_OURS.format("'PEXPIRE', KEYS[1], ARGV[2]")
_RELEASE = _IF_OURS.format("'DEL', KEYS[1]")


def open_node_backend(
    sim_load: Callable[[], Mapping[int, SimLoad]] | None = None,
) -> tuple[DeviceBackend, str]:
    """This node's device backend as the settings ask for it, and the reason for the log."""
    return open_backend(
        settings.MOC_DEVICES,
        node_name=settings.MOC_NODE_NAME,
        cpu_capacity_share=settings.MOC_CPU_CAPACITY_SHARE,
        sim_load=sim_load,
    )


class Agent:
    """One node's registration, heartbeat and (when it holds the node's lock) sampling."""

    def __init__(self, *, node_name: str, owner: str, backend: DeviceBackend | None = None) -> None:
        self.node_name = node_name
        self.owner = owner  # who holds the sampler lock: worker name and pid
        self.interval = settings.MOC_TELEMETRY_INTERVAL_S
        self.redis = redis_client()
        self.reason = ""
        self.backend = backend or self._open_backend()
        self.node: Node | None = None
        self.devices: dict[int, Device] = {}  # by index
        self.window = SampleWindow()
        self.next_heartbeat = 0.0
        self.next_store = 0.0
        self.sampling = False
        self._placed_uses: tuple[float, dict[int, int]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open_backend(self) -> DeviceBackend:
        backend, self.reason = open_node_backend(sim_load=self.sim_load)
        return backend

    # --- life -----------------------------------------------------------------------
    def register(self) -> None:
        self.node, devices = registration.node_register(
            name=self.node_name, info=self.backend.node_info(), devices=self.backend.devices()
        )
        self.devices = {device.index: device for device in devices}
        log.info("node %s registered with %d devices: %s", self.node_name, len(devices), self.reason)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="moc-fleet-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval * 3 + 5)
        with contextlib.suppress(redis.RedisError):
            self.redis.eval(_RELEASE, 1, LOCK_PREFIX + self.node_name, self.owner)
        self.backend.close()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                if self.node is None:
                    self.register()
                self.tick(time.time())
            except Exception:
                log.exception("fleet agent tick failed; trying again")
                close_old_connections()  # a dead database connection is replaced next time
            next_tick += self.interval
            now = time.monotonic()
            if next_tick < now:  # fell behind (a slow database): skip, don't burst
                next_tick = now + self.interval
            self._stop.wait(next_tick - now)

    # --- one tick -------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + settings.MOC_NODE_HEARTBEAT_S
            if registration.node_heartbeat(name=self.node_name) in (None, NodeState.OFFLINE):
                self.register()  # swept as offline while we were alive, or deleted: come back
        if not self.hold_lock():
            return
        started = time.perf_counter()
        readings = self.backend.sample(now)
        self.publish(now, readings)
        metrics.TELEMETRY_SAMPLE_SECONDS.observe(time.perf_counter() - started)
        metrics.TELEMETRY_SAMPLES.inc()
        if now >= self.next_store:
            if self.next_store:
                self.store(now)
            self.next_store = now + settings.MOC_TELEMETRY_STORE_S

    def hold_lock(self) -> bool:
        """Whether this agent samples the node now: it holds, renews or takes the lock."""
        key = LOCK_PREFIX + self.node_name
        ttl_ms = int(max(5.0, self.interval * 5) * 1000)
        try:
            held = bool(self.redis.eval(_RENEW, 1, key, self.owner, ttl_ms)) or bool(
                self.redis.set(key, self.owner, nx=True, px=ttl_ms)
            )
        except redis.RedisError as exc:
            log.warning("fleet agent cannot reach Redis: %s", exc)
            held = False
        if held != self.sampling:
            log.info("%s %s sampling node %s", self.owner, "starts" if held else "stops", self.node_name)
            self.sampling = held
        return held

    def publish(self, now: float, readings: list[DeviceReading]) -> None:
        assert self.node is not None
        devices = []
        for reading in readings:
            device = self.devices.get(reading.index)
            if device is None:  # appeared after registration: known from the next start
                continue
            self.follow_health(device, reading)
            figures = reading.as_message()
            self.window.add(device.pk, figures)
            devices.append(
                {
                    "id": device.pk,
                    "index": device.index,
                    "uuid": device.uuid,
                    "name": device.name,
                    "kind": device.kind,
                    "simulated": device.simulated,
                    "health": device.health,
                    **figures,
                }
            )
        message = telemetry.telemetry_message(
            node=self.node_name, node_id=self.node.pk, at=now, backend=self.backend.name, devices=devices
        )
        try:
            telemetry.publish(self.redis, message)
        except redis.RedisError as exc:
            metrics.TELEMETRY_PUBLISH_ERRORS.inc()
            log.warning("could not publish telemetry of node %s: %s", self.node_name, exc)

    def follow_health(self, device: Device, reading: DeviceReading) -> None:
        """Move the device one step towards the health its reading calls for."""
        wanted, reason = assess(reading, hot_c=settings.MOC_DEVICE_HOT_C)
        step = next_step(device.health, wanted)
        if step is None:
            return
        if step != wanted:  # UNHEALTHY earns HEALTHY back through DEGRADED
            reason = "recovering: its last reading was fine"
        if services.device_set_health(device=device, health=step, reason=reason):
            log.warning("device %s is %s%s", device, step.value, f": {reason}" if reason else "")
        else:  # another writer moved it (the offline sweep): re-read, decide next tick
            device.refresh_from_db(fields=["health", "health_reason"])

    def store(self, now: float) -> None:
        means = self.window.flush()
        written = retention.samples_store(at=datetime.fromtimestamp(now, tz=UTC), means=means)
        metrics.TELEMETRY_STORED_ROWS.inc(written)

    # --- simulated devices follow what MOC put on them ----------------------------------
    def sim_load(self) -> Mapping[int, SimLoad]:
        """Per device index: bytes held, jobs running and requests served per second, as the apps
        above fleet report them (apps.fleet.holdings)."""
        by_pk = dict(
            Device.objects.filter(node__name=self.node_name, retired_at=None).values_list("pk", "index")
        )
        activity = holdings.provider().activity(list(by_pk))
        now = time.monotonic()
        figures = {by_pk[pk]: a for pk, a in activity.items()}
        previous = self._placed_uses
        self._placed_uses = (now, {index: a.uses for index, a in figures.items()})
        loads = {}
        for index, a in figures.items():
            rate = 0.0
            if previous is not None and now > previous[0]:
                rate = max(0, a.uses - previous[1].get(index, a.uses)) / (now - previous[0])
            loads[index] = SimLoad(
                placed_bytes=a.held_bytes, running_jobs=a.running_jobs, requests_per_s=rate
            )
        return loads


# --- wiring into the Celery worker --------------------------------------------------------
_agent: Agent | None = None


def serves_this_node(queues: list[str]) -> bool:
    """Whether a worker consuming `queues` is a device worker of this node."""
    return bool(node_device_queues(queues, settings.MOC_NODE_NAME))


@worker_ready.connect(dispatch_uid="moc-fleet-agent-start")
def _start(sender: Any, **kwargs: Any) -> None:
    global _agent
    queues = [q.name for q in sender.app.amqp.queues.consume_from.values()]
    if not serves_this_node(queues):
        return
    _agent = Agent(node_name=settings.MOC_NODE_NAME, owner=f"{sender.hostname}:{os.getpid()}")
    _agent.start()


@worker_shutdown.connect(dispatch_uid="moc-fleet-agent-stop")
def _stop(sender: Any, **kwargs: Any) -> None:
    global _agent
    if _agent is not None:
        _agent.stop()
        _agent = None
