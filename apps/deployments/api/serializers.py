from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api.serializers import UserBriefSerializer
from apps.core.models import ApiKey
from apps.deployments import selectors
from apps.deployments.domain.checks import CHECK_NAME_CHOICES
from apps.deployments.domain.strategy import STRATEGY_CHOICES
from apps.deployments.models import (
    EDITABLE_FIELDS,
    SETTINGS_FIELDS,
    CheckResult,
    Deployment,
    KeyGrant,
    Release,
    ReleaseEvent,
    VerificationRun,
)
from apps.models.api.serializers import ModelVersionBriefSerializer, RegisteredModelBriefSerializer
from apps.models.models import ModelVersion


class DeploymentBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Deployment
        fields = ["id", "name", "state", "environment"]
        read_only_fields = fields


class ReleaseBriefSerializer(serializers.ModelSerializer):
    model_version = ModelVersionBriefSerializer(read_only=True)

    class Meta:
        model = Release
        fields = ["id", "state", "strategy", "model_version", "traffic_percent", "created_at"]
        read_only_fields = fields


class SplitSerializer(serializers.Serializer):
    """Who takes the deployment's traffic now."""

    stable = ReleaseBriefSerializer(read_only=True, allow_null=True, help_text="The promoted release")
    canary = ReleaseBriefSerializer(
        read_only=True, allow_null=True, help_text="The release rolling out, while it takes traffic"
    )
    canary_percent = serializers.IntegerField(read_only=True, help_text="The canary's share, 0-100")


class DeploymentSerializer(serializers.ModelSerializer):
    registered_model = RegisteredModelBriefSerializer(read_only=True, allow_null=True)
    current_release = ReleaseBriefSerializer(
        read_only=True, allow_null=True, help_text="The stable release serving now"
    )
    open_release = serializers.SerializerMethodField(help_text="The release in progress, if any")
    split = serializers.SerializerMethodField(help_text="Who takes the traffic now")
    owner = UserBriefSerializer(read_only=True, allow_null=True)
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    release_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "description",
            "environment",
            "state",
            "registered_model",
            "current_release",
            "open_release",
            "split",
            *SETTINGS_FIELDS,
            "owner",
            "release_count",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ReleaseBriefSerializer(allow_null=True))
    def get_open_release(self, obj: Deployment) -> dict[str, Any] | None:
        release = selectors.open_release(obj)
        return ReleaseBriefSerializer(release).data if release is not None else None

    @extend_schema_field(SplitSerializer)
    def get_split(self, obj: Deployment) -> dict[str, Any]:
        return SplitSerializer(selectors.split_of(obj)).data


class _DeploymentFieldsInput(serializers.ModelSerializer):
    """The editable fields, with the model's own choices and bounds; the JSON ones typed."""

    required_checks = serializers.ListField(
        child=serializers.ChoiceField(choices=CHECK_NAME_CHOICES),
        required=False,
        help_text="Checks whose failure stops a release (default: all)",
    )
    golden_set = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='Quality check: [{"prompt": ..., "expected": ..., "match": "exact|contains|similarity", '
        '"tolerance": 0.8, "max_new_tokens": 32}]',
    )
    canary_steps = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        required=False,
        allow_empty=False,
        help_text="Canary traffic steps in percent, rising, ending at 100",
    )

    class Meta:
        model = Deployment
        fields = list(EDITABLE_FIELDS)


class DeploymentCreateInput(_DeploymentFieldsInput):
    name = serializers.CharField(
        max_length=63, help_text="Lower-case letters, digits and '-', starting with a letter; part of URLs"
    )

    class Meta(_DeploymentFieldsInput.Meta):
        fields = ["name", *_DeploymentFieldsInput.Meta.fields]


class DeploymentUpdateInput(_DeploymentFieldsInput):
    """Every field optional: what is sent changes. The name cannot change."""


class ReleaseSerializer(serializers.ModelSerializer):
    deployment = DeploymentBriefSerializer(read_only=True)
    model_version = ModelVersionBriefSerializer(read_only=True)
    previous_release = ReleaseBriefSerializer(
        read_only=True, allow_null=True, help_text="The stable release when it started: where a rollback goes"
    )
    gate_overridden_by = UserBriefSerializer(read_only=True, allow_null=True)
    created_by = UserBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Release
        fields = [
            "id",
            "deployment",
            "model_version",
            "strategy",
            "steps",
            "step_index",
            "step_started_at",
            "traffic_percent",
            "state",
            "resume_to",
            "reason",
            "previous_release",
            "previous_kept_until",
            "gate_overridden_by",
            "placements",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "promoted_at",
            "finished_at",
        ]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.STR)
class DeploymentRefField(serializers.RelatedField):
    """A deployment by its id or its name."""

    default_error_messages = {
        "does_not_exist": "No deployment '{value}'.",
        "incorrect_type": "A deployment's id or name.",
    }

    def to_internal_value(self, data: Any) -> Deployment:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("incorrect_type")
        try:
            return selectors.deployment_by_ref(self.get_queryset(), str(data))
        except (Deployment.DoesNotExist, ValueError):
            self.fail("does_not_exist", value=data)
        raise AssertionError  # fail() raised

    def to_representation(self, value: Deployment) -> int:
        return value.pk


class ReleaseCreateInput(serializers.Serializer):
    deployment = DeploymentRefField(queryset=Deployment.objects.all(), help_text="Its id or name")
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    strategy = serializers.ChoiceField(
        choices=STRATEGY_CHOICES,
        required=False,
        allow_null=True,
        help_text="Default: the deployment's strategy",
    )
    steps = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        required=False,
        allow_null=True,
        help_text="Canary only: traffic steps in percent ending at 100 (default: the deployment's)",
    )
    override_gate = serializers.BooleanField(
        default=False,
        help_text="Admins only: release to production without a passed staging verification (audited)",
    )


class ReleaseActionInput(serializers.Serializer):
    reason = serializers.CharField(
        max_length=300, required=False, allow_blank=True, default="", help_text="Why, for the timeline"
    )


class ReleaseEventSerializer(serializers.ModelSerializer):
    actor = UserBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = ReleaseEvent
        fields = [
            "id",
            "release",
            "at",
            "kind",
            "from_state",
            "to_state",
            "traffic_percent",
            "cause",
            "actor",
            "message",
            "details",
        ]
        read_only_fields = fields


class CheckSpecSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    timeout_s = serializers.FloatField(read_only=True, help_text="How long it may run before it fails")


class CheckResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = CheckResult
        fields = [
            "id",
            "run",
            "name",
            "status",
            "required",
            "duration_ms",
            "reason",
            "evidence",
            "checked_at",
        ]
        read_only_fields = fields


class VerificationRunSerializer(serializers.ModelSerializer):
    checks = CheckResultSerializer(many=True, read_only=True)

    class Meta:
        model = VerificationRun
        fields = ["id", "release", "state", "error", "created_at", "started_at", "finished_at", "checks"]
        read_only_fields = fields


class ApiKeyBriefSerializer(serializers.ModelSerializer):
    owner = UserBriefSerializer(read_only=True)

    class Meta:
        model = ApiKey
        fields = ["prefix", "name", "role", "owner", "revoked"]
        read_only_fields = fields


class KeyGrantSerializer(serializers.ModelSerializer):
    key = ApiKeyBriefSerializer(read_only=True, help_text="The key; its prefix is its id")
    deployment = DeploymentBriefSerializer(read_only=True)

    class Meta:
        model = KeyGrant
        fields = ["key", "deployment", "created_at"]
        read_only_fields = fields


class KeyGrantInput(serializers.Serializer):
    key = serializers.SlugRelatedField(
        slug_field="prefix",
        queryset=ApiKey.objects.all(),
        help_text="The API key's id (its prefix, as /api/v1/api-keys/ lists it)",
        error_messages={
            "does_not_exist": "No API key '{value}'.",
            "invalid": "An API key's id (its prefix).",
        },
    )
