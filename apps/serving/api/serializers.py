from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.fleet.api.serializers import DeviceBriefSerializer
from apps.fleet.models import Device
from apps.models.api.serializers import RegisteredModelBriefSerializer
from apps.models.models import ModelVersion
from apps.serving.models import InferenceRecord, Placement, ServingProfile
from apps.serving.placing.devices import memory_kind_of


class PlacementVersionSerializer(serializers.ModelSerializer):
    model = RegisteredModelBriefSerializer(read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "model", "number", "format", "validation_state"]
        read_only_fields = fields


class PlacementSerializer(serializers.ModelSerializer):
    version = PlacementVersionSerializer(read_only=True)
    device = DeviceBriefSerializer(read_only=True)
    measured_on = serializers.SerializerMethodField(
        help_text="The memory measured_bytes was measured in: host memory, or the GPU's model. It holds"
        " for later loads of the version on devices of that kind only; null until measured"
    )

    class Meta:
        model = Placement
        fields = [
            "id",
            "version",
            "device",
            "state",
            "reserved_bytes",
            "measured_bytes",
            "measured_on",
            "pinned",
            "keep_alive_s",
            "last_used_at",
            "use_count",
            "loaded_at",
            "ended_at",
            "error",
            "error_class",
            "end_reason",
            "load_seconds",
            "priority",
            "depends_on",
            "displaced_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_measured_on(self, placement: Placement) -> str | None:
        return None if placement.measured_bytes is None else str(memory_kind_of(placement.device))


class PlacementCreateInput(serializers.Serializer):
    """Load a version: where the scheduler may put it, and how it is kept."""

    version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.select_related("model"))
    device = serializers.PrimaryKeyRelatedField(
        queryset=Device.objects.select_related("node"), required=False, help_text="Only this device"
    )
    node = serializers.CharField(required=False, max_length=100, help_text="Only devices of this node")
    pinned = serializers.BooleanField(
        required=False, help_text="Never evicted (default: its serving profile)"
    )
    keep_alive_s = serializers.IntegerField(
        required=False, min_value=1, max_value=30 * 86400, help_text="Unloaded after this long unused"
    )


class PlacementUnloadInput(serializers.Serializer):
    reason = serializers.CharField(required=False, max_length=200, default="asked")


class PlacementPinInput(serializers.Serializer):
    pinned = serializers.BooleanField()


class ServingProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServingProfile
        fields = [
            "id",
            "version",
            "max_concurrency",
            "max_queue",
            "request_timeout_s",
            "breaker_failures",
            "breaker_open_s",
            "keep_alive_s",
            "pinned",
            "preload",
            "preload_node",
            "allow_pickle",
            "created_at",
            "updated_at",
        ]
        # Pickles can carry code: allowing them is for admins, in the admin site.
        read_only_fields = ["id", "allow_pickle", "created_at", "updated_at"]

        extra_kwargs = {
            "max_concurrency": {"min_value": 1, "max_value": 10_000},
            "max_queue": {"min_value": 0, "max_value": 100_000},
            "request_timeout_s": {"min_value": 0.1, "max_value": 3600},
            "breaker_failures": {"min_value": 1, "max_value": 1000},
            "breaker_open_s": {"min_value": 0.1, "max_value": 86400},
            "keep_alive_s": {"min_value": 1, "max_value": 30 * 86400},
        }

    def validate_version(self, value: ModelVersion) -> ModelVersion:
        # A profile belongs to its version: moving it would carry an admin's pickle grant along.
        if self.instance is not None and value != self.instance.version:
            raise serializers.ValidationError(
                "A profile stays with its version; make one for the other version."
            )
        return value


class InferenceRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = InferenceRecord
        fields = [
            "id",
            "at",
            "version",
            "placement",
            "task",
            "outcome",
            "error_class",
            "queue_ms",
            "compute_ms",
            "tokens_in",
            "tokens_out",
        ]
        read_only_fields = fields


class GenerateInput(serializers.Serializer):
    prompt = serializers.CharField(max_length=100_000, trim_whitespace=False)
    max_new_tokens = serializers.IntegerField(min_value=1, max_value=4096, default=32)
    temperature = serializers.FloatField(min_value=0.0, max_value=5.0, default=0.7, help_text="0: greedy")
    top_p = serializers.FloatField(min_value=0.0, max_value=1.0, default=1.0)
    stop = serializers.ListField(
        child=serializers.CharField(max_length=100, trim_whitespace=False), max_length=8, default=list
    )
    seed = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, allow_null=True)

    def validate_top_p(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Must be more than 0.")
        return value


class EmbedInput(serializers.Serializer):
    texts = serializers.ListField(
        child=serializers.CharField(max_length=100_000, trim_whitespace=False), min_length=1, max_length=256
    )


class TensorsInput(serializers.Serializer):
    inputs = serializers.DictField(
        help_text='Input name -> {"dtype": "int64", "shape": [1, 8], "data": [...]} or a nested list'
    )


TASK_INPUTS: dict[str, type[serializers.Serializer]] = {
    "generate": GenerateInput,
    "embed": EmbedInput,
    "tensors": TensorsInput,
}


class InferenceInput(serializers.Serializer):
    """One request: `task` says which, and `input` holds that task's fields."""

    task = serializers.ChoiceField(choices=sorted(TASK_INPUTS))
    input = serializers.DictField(
        help_text="generate: prompt, max_new_tokens, temperature, top_p, stop, seed; "
        "embed: texts; tensors: inputs"
    )
    placement = serializers.IntegerField(required=False, help_text="Only this placement of the version")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        inner = TASK_INPUTS[attrs["task"]](data=attrs["input"])
        if not inner.is_valid():
            raise serializers.ValidationError({"input": inner.errors})
        attrs["input"] = dict(inner.validated_data)
        return attrs


class ErrorBody(serializers.Serializer):
    """MOC's one error body (apps.core.api.errors)."""

    error = serializers.CharField(
        help_text="A code: invalid, not_loaded, bulkhead_full, breaker_open, worker_silent, queue_busy, "
        "broker_unavailable, timeout, ..."
    )
    detail = serializers.CharField(help_text="A sentence saying why")
    fields = serializers.DictField(help_text="Field -> messages, for input errors")


class InferenceOutput(serializers.Serializer):
    placement = serializers.IntegerField()
    device = serializers.IntegerField()
    result = serializers.DictField(
        help_text="generate: text, tokens_in, tokens_out, finish_reason; "
        "embed: embeddings, dim; tensors: outputs"
    )
    queue_ms = serializers.FloatField(
        help_text="From sending to a worker thread starting it, with any bulkhead wait"
    )
    compute_ms = serializers.FloatField()
    total_ms = serializers.FloatField(help_text="As the web process saw it")
