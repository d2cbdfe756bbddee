from __future__ import annotations

from rest_framework import serializers

from apps.core.api.serializers import UserBriefSerializer
from apps.core.domain.queues import Queue
from apps.fleet.api.serializers import DeviceBriefSerializer
from apps.fleet.models import Device
from apps.jobs.domain import kinds
from apps.jobs.models import Job, JobEvent
from apps.models.api.serializers import ModelVersionBriefSerializer
from apps.models.models import ModelVersion


class JobSerializer(serializers.ModelSerializer):
    model_version = ModelVersionBriefSerializer(read_only=True, allow_null=True)
    device = DeviceBriefSerializer(read_only=True, allow_null=True)
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    terminal = serializers.BooleanField(read_only=True, help_text="The job is over: it will not change again")

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
            "device",
            "reserved_bytes",
            "attempts",
            "max_attempts",
            "progress",
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


class JobCreateInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=kinds.KIND_CHOICES)
    queue = serializers.CharField(
        max_length=100, default=Queue.DEFAULT.value, help_text="`default` or gpu.<node>.<index>"
    )
    params = serializers.JSONField(default=dict, help_text="Parameters of the kind, a JSON object")
    priority = serializers.IntegerField(
        min_value=kinds.PRIORITY_MIN, max_value=kinds.PRIORITY_MAX, default=kinds.PRIORITY_DEFAULT
    )
    max_attempts = serializers.IntegerField(min_value=1, max_value=kinds.MAX_ATTEMPTS_LIMIT, default=3)
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True, default=None
    )
    device = serializers.PrimaryKeyRelatedField(
        queryset=Device.objects.all(), required=False, allow_null=True, default=None
    )
    reserved_bytes = serializers.IntegerField(
        min_value=0,
        default=0,
        help_text="Device memory it holds while it runs; models are not placed into it meanwhile",
    )


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["id", "at", "level", "message", "data"]
        read_only_fields = fields
