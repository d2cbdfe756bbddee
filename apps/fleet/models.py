"""The fleet's tables: nodes, their devices and the devices' telemetry. What MOC puts on a device
(placements, jobs) belongs to the apps above; fleet learns of it through apps.fleet.holdings."""

from __future__ import annotations

from django.db import models
from django.urls import reverse

from apps.core.domain.queues import device_queue
from apps.core.models import TimeStamped
from apps.fleet.domain.capacity import capped_by_host
from apps.fleet.domain.kinds import (
    BACKEND_CHOICES,
    DEVICE_KIND_CHOICES,
    RESOLUTION_CHOICES,
    Resolution,
)
from apps.fleet.domain.states import DEVICE_HEALTH, NODE


class Node(TimeStamped):
    """A machine that runs MOC workers, as its workers registered it."""

    moc_write_role = None  # registered by workers; admins may repair

    name = models.CharField(max_length=100, unique=True)
    hostname = models.CharField(max_length=255, blank=True)
    cpu_model = models.CharField(max_length=200, blank=True)
    cpu_count = models.PositiveIntegerField(default=0)
    ram_bytes = models.PositiveBigIntegerField(default=0)
    driver_version = models.CharField(max_length=50, blank=True)
    cuda_version = models.CharField(max_length=50, blank=True)
    backend = models.CharField(max_length=8, choices=BACKEND_CHOICES, db_index=True)
    state = models.CharField(max_length=16, choices=NODE.choices, default=NODE.initial, db_index=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    labels = models.JSONField(default=dict, blank=True, help_text='e.g. {"rack": "a3", "zone": "eu-1"}')

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("fleet:node", args=[self.pk])


class Device(TimeStamped):
    """One GPU of a node, or the node's CPU when it has no GPU."""

    moc_write_role = None  # registered by workers; admins may repair

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="devices")
    index = models.PositiveSmallIntegerField(help_text="The device's index on its node (NVML index for GPUs)")
    uuid = models.CharField(max_length=100, unique=True, help_text="NVML's GPU UUID, or one MOC made up")
    name = models.CharField(max_length=200, help_text="e.g. NVIDIA H100 80GB HBM3")
    kind = models.CharField(max_length=8, choices=DEVICE_KIND_CHOICES)
    simulated = models.BooleanField(default=False, help_text="A simulated device: no real hardware behind it")
    memory_total_bytes = models.PositiveBigIntegerField(default=0)
    capacity_bytes = models.PositiveBigIntegerField(
        default=0, help_text="How much of the memory MOC may place models in"
    )
    health = models.CharField(
        max_length=16, choices=DEVICE_HEALTH.choices, default=DEVICE_HEALTH.initial, db_index=True
    )
    health_reason = models.CharField(
        max_length=300, blank=True, help_text="Why it is not healthy, in the words of its last check"
    )
    eviction_clock = models.FloatField(
        default=0.0, help_text="The eviction policy's clock: the highest priority it evicted here (GDSF)"
    )
    retired_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="Since when its node no longer offers it (its worker last started without it); "
        "empty while offered",
    )

    class Meta:
        ordering = ["node__name", "kind", "index"]
        constraints = [
            models.UniqueConstraint(fields=["node", "kind", "index"], name="fleet_device_index_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.node.name}/{self.kind}{self.index}"

    def get_absolute_url(self) -> str:
        return reverse("fleet:device", args=[self.pk])

    @property
    def retired(self) -> bool:
        """No longer offered by its node: kept for its history, never placed on, not counted."""
        return self.retired_at is not None

    @property
    def capped_by_host(self) -> bool:
        """A simulated GPU offering less than its card would, because the host's RAM holds its models."""
        return capped_by_host(
            simulated=self.simulated,
            memory_total_bytes=self.memory_total_bytes,
            capacity_bytes=self.capacity_bytes,
        )

    @property
    def queue(self) -> str:
        """The Celery queue of the worker that serves this device."""
        return device_queue(self.kind, self.node.name, self.index)


class TelemetrySample(models.Model):
    """One reading of a device (or a one-minute rollup of readings). Kept lean: there are many."""

    moc_write_role = None

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    resolution_s = models.PositiveIntegerField(choices=RESOLUTION_CHOICES, default=Resolution.RAW.value)
    gpu_util = models.FloatField(null=True, blank=True, help_text="Percent, 0-100")
    mem_util = models.FloatField(null=True, blank=True, help_text="Percent of memory bandwidth, 0-100")
    mem_used_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    temperature_c = models.FloatField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["device", "at"], name="fleet_sample_device_at")]

    def __str__(self) -> str:
        return f"{self.device_id} @ {self.at:%Y-%m-%d %H:%M:%S}"
