from __future__ import annotations

from rest_framework import serializers

from apps.core.api.serializers import UserBriefSerializer
from apps.deployments.domain.strategy import STRATEGY_CHOICES
from apps.deployments.models import MAX_REPLICAS, CheckResult, Deployment, Release, VerificationRun
from apps.models.api.serializers import ModelVersionBriefSerializer, RegisteredModelBriefSerializer
from apps.models.models import ModelVersion, RegisteredModel


class DeploymentBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Deployment
        fields = ["id", "name", "state"]
        read_only_fields = fields


class ReleaseBriefSerializer(serializers.ModelSerializer):
    model_version = ModelVersionBriefSerializer(read_only=True)

    class Meta:
        model = Release
        fields = ["id", "state", "strategy", "model_version", "created_at"]
        read_only_fields = fields


class DeploymentSerializer(serializers.ModelSerializer):
    registered_model = RegisteredModelBriefSerializer(read_only=True, allow_null=True)
    current_release = ReleaseBriefSerializer(read_only=True, allow_null=True)
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    release_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "description",
            "state",
            "registered_model",
            "current_release",
            "replicas",
            "strategy",
            "release_count",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DeploymentCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=63, help_text="Lower-case letters, digits and '-'; part of URLs")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    registered_model = serializers.PrimaryKeyRelatedField(
        queryset=RegisteredModel.objects.all(), required=False, allow_null=True, default=None
    )
    replicas = serializers.IntegerField(min_value=0, max_value=MAX_REPLICAS, default=1)
    strategy = serializers.ChoiceField(choices=STRATEGY_CHOICES, default=STRATEGY_CHOICES[0][0])


class DeploymentUpdateInput(serializers.Serializer):
    """Every field optional: what is sent changes. The name cannot change."""

    description = serializers.CharField(required=False, allow_blank=True)
    registered_model = serializers.PrimaryKeyRelatedField(
        queryset=RegisteredModel.objects.all(), required=False, allow_null=True
    )
    replicas = serializers.IntegerField(min_value=0, max_value=MAX_REPLICAS, required=False)
    strategy = serializers.ChoiceField(choices=STRATEGY_CHOICES, required=False)


class ReleaseSerializer(serializers.ModelSerializer):
    deployment = DeploymentBriefSerializer(read_only=True)
    model_version = ModelVersionBriefSerializer(read_only=True)
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
            "traffic_percent",
            "state",
            "reason",
            "placements",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ReleaseCreateInput(serializers.Serializer):
    deployment = serializers.PrimaryKeyRelatedField(queryset=Deployment.objects.all())
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
