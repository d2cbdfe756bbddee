from __future__ import annotations

from rest_framework import serializers

from apps.fleet.models import Device, Node, Placement, TelemetrySample
from apps.models.api.serializers import RegisteredModelBriefSerializer
from apps.models.models import ModelVersion


class NodeBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Node
        fields = ["id", "name", "state"]
        read_only_fields = fields


class DeviceBriefSerializer(serializers.ModelSerializer):
    node = NodeBriefSerializer(read_only=True)

    class Meta:
        model = Device
        fields = ["id", "node", "index", "name", "kind", "simulated", "health"]
        read_only_fields = fields


class DeviceSerializer(serializers.ModelSerializer):
    node = NodeBriefSerializer(read_only=True)
    reserved_bytes = serializers.IntegerField(
        read_only=True, help_text="Memory held by the device's active placements"
    )
    active_placements = serializers.IntegerField(read_only=True)
    last_sample_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_gpu_util = serializers.FloatField(read_only=True, allow_null=True)
    last_mem_used_bytes = serializers.IntegerField(read_only=True, allow_null=True)
    last_temperature_c = serializers.FloatField(read_only=True, allow_null=True)

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


class PlacementVersionSerializer(serializers.ModelSerializer):
    model = RegisteredModelBriefSerializer(read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "model", "number", "format", "validation_state"]
        read_only_fields = fields


class PlacementSerializer(serializers.ModelSerializer):
    version = PlacementVersionSerializer(read_only=True)
    device = DeviceBriefSerializer(read_only=True)

    class Meta:
        model = Placement
        fields = [
            "id",
            "version",
            "device",
            "state",
            "reserved_bytes",
            "measured_bytes",
            "pinned",
            "keep_alive_s",
            "last_used_at",
            "use_count",
            "loaded_at",
            "ended_at",
            "error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
