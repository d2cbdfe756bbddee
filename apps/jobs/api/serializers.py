from __future__ import annotations

from rest_framework import serializers

from apps.core.api.serializers import UserBriefSerializer
from apps.core.domain.queues import Queue
from apps.fleet.api.serializers import DeviceBriefSerializer
from apps.fleet.models import Device
from apps.jobs.api.datasets import DatasetBriefSerializer
from apps.jobs.domain import kinds
from apps.jobs.models import Job, JobCheckpoint, JobEvent
from apps.models.api.serializers import ModelVersionBriefSerializer


class JobSerializer(serializers.ModelSerializer):
    model_version = ModelVersionBriefSerializer(read_only=True, allow_null=True)
    device = DeviceBriefSerializer(
        read_only=True, allow_null=True, help_text="Where it was placed last (its memory reserved there)"
    )
    pinned_device = DeviceBriefSerializer(
        read_only=True,
        allow_null=True,
        help_text="The device it was pinned to: it is only ever placed there, also when it waits again",
    )
    dataset = DatasetBriefSerializer(read_only=True, allow_null=True)
    output_version = ModelVersionBriefSerializer(
        read_only=True, allow_null=True, help_text="The version it registered (a fine-tune's, a conversion's)"
    )
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    terminal = serializers.BooleanField(read_only=True, help_text="The job is over: it will not change again")
    percent = serializers.IntegerField(read_only=True, help_text="Progress in percent, 0-100")

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "state",
            "terminal",
            "priority",
            "queue",
            "params",
            "model_version",
            "dataset",
            "output_version",
            "retry_of",
            "device",
            "pinned_device",
            "reserved_bytes",
            "wait_for_room",
            "not_before",
            "attempts",
            "max_attempts",
            "progress",
            "percent",
            "step",
            "total_steps",
            "eta_s",
            "tokens_per_s",
            "memory_bytes",
            "adjustments",
            "stop_save",
            "preempt_requested_at",
            "message",
            "error_class",
            "error",
            "result",
            "created_by",
            "created_at",
            "updated_at",
            "queued_at",
            "dispatched_at",
            "started_at",
            "finished_at",
            "worker",
            "task_id",
        ]
        read_only_fields = fields
        extra_kwargs = {"retry_of": {"help_text": "The id of the job this one retries"}}


class JobCreateInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=kinds.KIND_CHOICES)
    params = serializers.JSONField(
        default=dict,
        help_text="The kind's parameters, a JSON object (fine_tune: base_version, dataset, method, "
        "learning_rate, epochs or max_steps, batch_size, grad_accum, seq_len, ...; evaluate: version, "
        "dataset and/or golden; benchmark: version, batch_sizes, prompt_lengths; convert: version)",
    )
    priority = serializers.IntegerField(
        min_value=kinds.PRIORITY_MIN, max_value=kinds.PRIORITY_MAX, default=kinds.PRIORITY_DEFAULT
    )
    max_attempts = serializers.IntegerField(min_value=1, max_value=kinds.MAX_ATTEMPTS_LIMIT, default=3)
    device = serializers.PrimaryKeyRelatedField(
        queryset=Device.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="fine_tune, evaluate, benchmark: run on this device only (default: wherever it fits)",
    )
    wait_for_room = serializers.BooleanField(
        default=False,
        help_text="When no device has room for it now, wait in the queue instead of being refused (409)",
    )
    queue = serializers.CharField(
        max_length=100,
        default=Queue.DEFAULT.value,
        help_text="selftest only: `default` or gpu.<node>.<index>; device kinds go where room is reserved",
    )


class JobCancelInput(serializers.Serializer):
    save = serializers.BooleanField(
        default=False, help_text="A running fine-tune writes a checkpoint before it stops"
    )


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["id", "at", "level", "message", "data"]
        read_only_fields = fields


class JobCheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobCheckpoint
        fields = ["id", "step", "path", "size_bytes", "reason", "at"]
        read_only_fields = fields
