from __future__ import annotations

from rest_framework import serializers

from apps.core.api.serializers import UserBriefSerializer
from apps.models.domain import naming
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel


class RegisteredModelBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = RegisteredModel
        fields = ["id", "name", "archived"]
        read_only_fields = fields


class ModelVersionBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "number", "format", "validation_state", "size_bytes", "archived", "created_at"]
        read_only_fields = fields


class ModelAliasBriefSerializer(serializers.ModelSerializer):
    version_id = serializers.IntegerField(read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = ModelAlias
        fields = ["name", "version_id", "version_number"]
        read_only_fields = fields


class RegisteredModelSerializer(serializers.ModelSerializer):
    owner = UserBriefSerializer(read_only=True)
    version_count = serializers.IntegerField(read_only=True)
    versions = ModelVersionBriefSerializer(many=True, read_only=True)
    aliases = ModelAliasBriefSerializer(many=True, read_only=True)

    class Meta:
        model = RegisteredModel
        fields = [
            "id",
            "name",
            "description",
            "tags",
            "owner",
            "archived",
            "archived_at",
            "version_count",
            "versions",
            "aliases",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RegisteredModelInput(serializers.Serializer):
    """What a client sends to register (POST) or edit (PUT, PATCH) a model. PUT replaces:
    fields left out go back to their defaults; PATCH changes only what it names."""

    name = serializers.CharField(max_length=naming.NAME_MAX)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=naming.TAG_MAX), required=False, default=list
    )


class ModelVersionSerializer(serializers.ModelSerializer):
    model = RegisteredModelBriefSerializer(read_only=True)
    parent = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by = UserBriefSerializer(read_only=True)
    file_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "model",
            "number",
            "format",
            "root",
            "path",
            "size_bytes",
            "sha256",
            "params_count",
            "estimated_vram_bytes",
            "metadata",
            "validation_state",
            "validation_error",
            "validated_at",
            "parent",
            "created_by",
            "file_count",
            "archived",
            "archived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ModelFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelFile
        fields = ["id", "version", "path", "size_bytes", "sha256", "format", "mtime", "inode"]
        read_only_fields = fields


class ModelAliasSerializer(serializers.ModelSerializer):
    model = RegisteredModelBriefSerializer(read_only=True)
    version = ModelVersionBriefSerializer(read_only=True)

    class Meta:
        model = ModelAlias
        fields = ["id", "model", "name", "version", "created_at", "updated_at"]
        read_only_fields = fields
