from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from apps.core.domain.roles import ROLE_CHOICES
from apps.core.forms import validate_expiry_date
from apps.core.models import ApiKey, AuditEvent, TaskDelivery


class UserBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username"]


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=ROLE_CHOICES, allow_null=True)
    api_key = serializers.CharField(allow_null=True, help_text="Prefix of the key this request used, if any")


class AuditEventSerializer(serializers.ModelSerializer):
    object_type = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_label",
            "api_key_prefix",
            "action",
            "source",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "remote_addr",
            "request_path",
        ]

    def get_object_type(self, obj: AuditEvent) -> str | None:
        ct = obj.content_type
        return f"{ct.app_label}.{ct.model}" if ct else None


class ApiKeySerializer(serializers.ModelSerializer):
    owner = UserBriefSerializer(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "prefix",
            "name",
            "role",
            "owner",
            "created",
            "expiry_date",
            "revoked",
            "limited",
            "last_used_at",
        ]
        read_only_fields = fields


class ApiKeyCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    role = serializers.ChoiceField(choices=ROLE_CHOICES)
    expiry_date = serializers.DateTimeField(
        required=False, allow_null=True, validators=[validate_expiry_date]
    )


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The secret; shown this once and never again")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class TaskDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskDelivery
        fields = [
            "id",
            "task_id",
            "task_name",
            "queue",
            "args",
            "kwargs",
            "state",
            "deliveries",
            "worker",
            "error",
            "first_delivered_at",
            "last_delivered_at",
            "finished_at",
        ]
