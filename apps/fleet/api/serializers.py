from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from apps.core.workers import WorkerStatus
from apps.fleet.domain.history import RANGES_S, STORED_METRICS
from apps.fleet.models import Device, Node, TelemetrySample


class NodeBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Node
        fields = ["id", "name", "state"]
        read_only_fields = fields


RETIRED_HELP = "Its node no longer offers it: kept for its history, never placed on, not counted"


class WorkerSerializer(serializers.Serializer):
    """The worker of a device's queue, from its heartbeats (apps.fleet.selectors.WorkerFacts)."""

    hostname = serializers.CharField(help_text="Celery's name for it, e.g. gpu.node1.0@host")
    pid = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=[s.value for s in WorkerStatus],
        help_text="alive: heard of lately; silent: not heard of for MOC_WORKER_SILENT_AFTER_S and no "
        "goodbye, taken for dead; stopped: it shut down cleanly",
    )
    alive = serializers.BooleanField()
    started_at = serializers.DateTimeField(help_text="When this run of the worker started")
    last_seen_at = serializers.DateTimeField(help_text="Its latest heartbeat")
    silent_since = serializers.DateTimeField(
        allow_null=True, help_text="Its latest heartbeat, once it is not alive; null while it is"
    )
    restarts = serializers.IntegerField(
        help_text="Times it started again under this name after a run that died (a crash, not a clean stop)"
    )
    last_restart_at = serializers.DateTimeField(allow_null=True, help_text="When the latest such restart was")
    dead_run_pid = serializers.IntegerField(allow_null=True, help_text="The run that died before it")
    dead_run_last_seen_at = serializers.DateTimeField(
        allow_null=True, help_text="When the run that died was last heard of"
    )


WORKER_HELP = (
    "The worker that consumes its queue, from the workers' heartbeats; null when none was ever "
    "heard of, or while Redis cannot be read"
)


class DeviceBriefSerializer(serializers.ModelSerializer):
    node = NodeBriefSerializer(read_only=True)
    retired = serializers.BooleanField(read_only=True, help_text=RETIRED_HELP)

    class Meta:
        model = Device
        fields = ["id", "node", "index", "name", "kind", "simulated", "health", "retired"]
        read_only_fields = fields


class DeviceSerializer(serializers.ModelSerializer):
    node = NodeBriefSerializer(read_only=True)
    reserved_bytes = serializers.IntegerField(
        read_only=True,
        help_text="Memory MOC holds there: its active placements and running jobs' reservations",
    )
    active_placements = serializers.IntegerField(read_only=True)
    last_sample_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_gpu_util = serializers.FloatField(read_only=True, allow_null=True)
    last_mem_used_bytes = serializers.IntegerField(read_only=True, allow_null=True)
    last_temperature_c = serializers.FloatField(read_only=True, allow_null=True)
    queue = serializers.CharField(read_only=True, help_text="The Celery queue of the worker that serves it")
    worker = WorkerSerializer(read_only=True, allow_null=True, help_text=WORKER_HELP)
    retired = serializers.BooleanField(read_only=True, help_text=RETIRED_HELP)

    class Meta:
        model = Device
        fields = [
            "id",
            "node",
            "index",
            "uuid",
            "name",
            "kind",
            "simulated",
            "memory_total_bytes",
            "capacity_bytes",
            "reserved_bytes",
            "health",
            "health_reason",
            "retired",
            "retired_at",
            "queue",
            "worker",
            "active_placements",
            "last_sample_at",
            "last_gpu_util",
            "last_mem_used_bytes",
            "last_temperature_c",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class NodeDeviceSerializer(serializers.ModelSerializer):
    retired = serializers.BooleanField(read_only=True, help_text=RETIRED_HELP)
    queue = serializers.CharField(read_only=True, help_text="The Celery queue of the worker that serves it")
    worker = WorkerSerializer(read_only=True, allow_null=True, help_text=WORKER_HELP)

    class Meta:
        model = Device
        fields = [
            "id",
            "index",
            "uuid",
            "name",
            "kind",
            "simulated",
            "memory_total_bytes",
            "capacity_bytes",
            "health",
            "retired",
            "retired_at",
            "queue",
            "worker",
        ]
        read_only_fields = fields


class NodeSerializer(serializers.ModelSerializer):
    devices = NodeDeviceSerializer(many=True, read_only=True)

    class Meta:
        model = Node
        fields = [
            "id",
            "name",
            "hostname",
            "backend",
            "state",
            "cpu_model",
            "cpu_count",
            "ram_bytes",
            "driver_version",
            "cuda_version",
            "labels",
            "last_heartbeat_at",
            "devices",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TelemetrySampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = TelemetrySample
        fields = [
            "id",
            "device",
            "at",
            "resolution_s",
            "gpu_util",
            "mem_util",
            "mem_used_bytes",
            "temperature_c",
            "power_w",
        ]
        read_only_fields = fields


class HistoryQuery(serializers.Serializer):
    """A device's stored telemetry over a range: `range`, or `start` (and optionally `end`)."""

    metrics = serializers.CharField(
        required=False,
        help_text=f"Comma-separated, from: {', '.join(STORED_METRICS)}. Default: all of them.",
    )
    range = serializers.ChoiceField(
        choices=sorted(RANGES_S, key=RANGES_S.__getitem__),
        required=False,
        help_text="The last 15 minutes ... 7 days, ending now. Use this or start/end.",
    )
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False, help_text="Default: now")

    def validate_metrics(self, value: str) -> list[str]:
        chosen = [m.strip() for m in value.split(",") if m.strip()]
        unknown = sorted(set(chosen) - set(STORED_METRICS))
        if unknown or not chosen:
            named = ", ".join(unknown) or "(none given)"
            raise serializers.ValidationError(
                f"Unknown metric(s) {named}; choose from {', '.join(STORED_METRICS)}."
            )
        return list(dict.fromkeys(chosen))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("end") or timezone.now()
        if "range" in attrs:
            if "start" in attrs:
                raise serializers.ValidationError({"range": "Give either range or start, not both."})
            start = end - timedelta(seconds=RANGES_S[attrs["range"]])
        elif "start" in attrs:
            start = attrs["start"]
        else:
            raise serializers.ValidationError({"range": "Give a range (e.g. 1h) or a start time."})
        if start >= end:
            raise serializers.ValidationError({"start": "Must be before end."})
        if end - start > timedelta(days=settings.MOC_TELEMETRY_RETENTION_DAYS + 1):
            raise serializers.ValidationError(
                {"start": f"At most {settings.MOC_TELEMETRY_RETENTION_DAYS} days are kept; ask for less."}
            )
        return {"metrics": attrs.get("metrics") or list(STORED_METRICS), "start": start, "end": end}


class HistorySerializer(serializers.Serializer):
    device = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    bucket_s = serializers.IntegerField(help_text="Seconds each point averages")
    metrics = serializers.DictField(
        child=serializers.ListField(child=serializers.ListField(min_length=2, max_length=2)),
        help_text="Per metric, [time, mean] pairs in time order; buckets without readings are absent",
    )


class TelemetrySnapshotSerializer(serializers.Serializer):
    nodes = serializers.ListField(
        child=serializers.DictField(),
        help_text="Each node's latest `telemetry` message, as the websocket sends it (docs/TELEMETRY.md)",
    )
