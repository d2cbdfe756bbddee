from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api.serializers import UserBriefSerializer
from apps.core.domain.text import printable
from apps.models.domain import naming
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel, ScanRun


class PrintableField(serializers.CharField):
    """A name from disk as a person should read it: every control or invisible formatting character
    written as a visible escape (a newline as \\n, DEL as \\x7f, a right-to-left override as
    \\u202e), the way apps.core.domain.text.printable and the pages show it. JSON escapes C0 controls
    but passes the others through raw, and a client that prints a decoded name acts on them or shows
    another name; the raw field beside it stays exact, for matching."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return printable(str(value))


def _display_of(field: str) -> PrintableField:
    return PrintableField(
        source=field,
        help_text=f"`{field}` with control characters written as visible escapes (\\n, \\x7f), for people",
    )


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


class ModelVersionRefSerializer(serializers.ModelSerializer):
    """A version named the way people read it: its model and its number (for lineage)."""

    model = RegisteredModelBriefSerializer(read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "model", "number"]
        read_only_fields = fields


class ModelAliasBriefSerializer(serializers.ModelSerializer):
    version_id = serializers.IntegerField(read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = ModelAlias
        fields = ["name", "version_id", "version_number"]
        read_only_fields = fields


class RegisteredModelSerializer(serializers.ModelSerializer):
    owner = UserBriefSerializer(read_only=True, allow_null=True)
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


class ModelVersionInput(serializers.Serializer):
    """What a client may change on a version: its lineage. Everything else comes from its files."""

    parent = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(),
        allow_null=True,
        help_text="The version this one was derived from (fine-tuned, quantised, converted); null clears it",
    )


class ValidationLineSerializer(serializers.Serializer):
    """One line of a validation report."""

    check = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["pass", "warn", "fail", "skip"],
        help_text="skip: the check could not be made (`detail`: why)",
    )
    detail = serializers.CharField(help_text="Why; the control characters of names in it are escaped")
    file = serializers.CharField(allow_blank=True, help_text="The file it is about; empty for the version")
    file_display = _display_of("file")


class VramEstimateSerializer(serializers.Serializer):
    weights = serializers.IntegerField(help_text="Bytes of weights, from the file headers")
    overhead = serializers.IntegerField(help_text="Bytes of runtime overhead")
    kv_cache = serializers.IntegerField(help_text="Bytes of KV cache at `context` tokens × `batch`")
    total = serializers.IntegerField()
    context = serializers.IntegerField()
    batch = serializers.IntegerField()
    basis = serializers.CharField(help_text="How the KV cache was counted, or why it was not")


class ModelFileBriefSerializer(serializers.ModelSerializer):
    path_display = _display_of("path")

    class Meta:
        model = ModelFile
        fields = ["id", "path", "path_display", "format", "size_bytes", "sha256"]
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    """A version. `path` (and each file's) is the name on disk exactly; `path_display` is the same
    with control characters shown as escapes. `parent` is the id of the version it was derived
    from (an adapter's base, found by discovery, or what an operator set); `parent_version` names it."""

    model = RegisteredModelBriefSerializer(read_only=True)
    path_display = _display_of("path")
    parent = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    parent_version = ModelVersionRefSerializer(
        source="parent", read_only=True, allow_null=True, help_text="The parent's model and number"
    )
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    file_count = serializers.IntegerField(read_only=True)
    files = ModelFileBriefSerializer(many=True, read_only=True)
    validation_report = ValidationLineSerializer(many=True, read_only=True)
    vram_estimate = serializers.SerializerMethodField()
    lineage = serializers.JSONField(
        read_only=True,
        help_text='How MOC made it, when a job did ({} otherwise): {"job": {"id", "url"}, "base_version", '
        '"dataset": {"id", "name"}, "params", "metrics"} for a fine-tune; a conversion names its source '
        "version and the input's sha256",
    )
    evaluations = serializers.JSONField(
        read_only=True,
        help_text="Its latest evaluation per key, as the evaluate job measured them: "
        '"dataset:<name>:<split>" '
        '-> {"loss", "perplexity", "rows", "tokens", "split", "dataset", "dataset_id", "sha256", '
        '"eval_share", "split_seed", "job", "at"}; "golden:<8 hex of the pairs\' sha256>" -> '
        '{"exact_match", "right", "of", "golden_sha256", "job", "at"} (older entries may be keyed by a bare '
        'dataset name or "golden")',
    )
    benchmark = serializers.JSONField(
        read_only=True,
        help_text='Its performance baseline from the latest benchmark job ({} before one ran): {"at", "job", '
        '"device": {"label", "kind", "simulated"}, "load_s", "memory_bytes", "memory_meter", "runs": '
        '[{"batch", "prompt_tokens", "new_tokens", "ttft_ms_p50", "ttft_ms_p99", "token_ms_p50", '
        '"token_ms_p99", "tokens_per_s"}], "ttft_ms_p50", "token_ms_p50", "latency_ms_p50", '
        '"latency_ms_p99", "single", "probe": {"ms_p50", ...}}; the deployments\' performance check '
        "holds a release's probes to probe.ms_p50 plus MOC_PERF_PATH_ALLOWANCE_MS",
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "model",
            "number",
            "format",
            "kind",
            "root",
            "path",
            "path_display",
            "size_bytes",
            "sha256",
            "params_count",
            "estimated_vram_bytes",
            "vram_estimate",
            "metadata",
            "validation_state",
            "validation_error",
            "validation_report",
            "validated_at",
            "parent",
            "parent_version",
            "lineage",
            "evaluations",
            "benchmark",
            "created_by",
            "file_count",
            "files",
            "archived",
            "archived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(VramEstimateSerializer(allow_null=True))
    def get_vram_estimate(self, version: ModelVersion) -> dict[str, Any] | None:
        return version.vram_estimate or None


class ModelFileSerializer(serializers.ModelSerializer):
    path_display = _display_of("path")

    class Meta:
        model = ModelFile
        fields = ["id", "version", "path", "path_display", "size_bytes", "sha256", "format", "mtime", "inode"]
        read_only_fields = fields


class ModelAliasSerializer(serializers.ModelSerializer):
    model = RegisteredModelBriefSerializer(read_only=True)
    version = ModelVersionBriefSerializer(read_only=True)

    class Meta:
        model = ModelAlias
        fields = ["id", "model", "name", "version", "created_at", "updated_at"]
        read_only_fields = fields


class AliasSetInput(serializers.Serializer):
    """Point an alias at a version of this model: creates the alias, or moves it."""

    name = serializers.CharField(max_length=naming.ALIAS_MAX, help_text="e.g. production, staging")
    version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), help_text="The version's id (not its number)"
    )


@extend_schema_field(OpenApiTypes.STR)
class RegisteredModelRefField(serializers.RelatedField):
    """A registered model by its name (any case) or its id. A string is a name first, since names
    may be all digits; a JSON number, or a string of digits no model is named, is an id."""

    default_error_messages = {
        "does_not_exist": "No registered model '{value}'.",
        "incorrect_type": "A registered model's name or id.",
    }

    def to_internal_value(self, data: Any) -> RegisteredModel:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("incorrect_type")
        queryset = self.get_queryset()
        if isinstance(data, str):
            named = queryset.filter(name__iexact=data.strip()).first()
            if named is not None:
                return named
        ref = str(data).strip()
        # Ids are bigint: a longer run of digits names no model.
        if ref.isascii() and ref.isdigit() and int(ref) < 2**63:
            by_id = queryset.filter(pk=int(ref)).first()
            if by_id is not None:
                return by_id
        self.fail("does_not_exist", value=data)
        raise AssertionError  # fail() raised

    def to_representation(self, value: RegisteredModel) -> int:
        return value.pk


class VersionMoveInput(serializers.Serializer):
    """Make this version the next-numbered version of another registered model."""

    model = RegisteredModelRefField(
        queryset=RegisteredModel.objects.all(),
        help_text="The registered model it joins: its name or id. Not archived, not its own model",
    )


class ScanErrorSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="As on disk (empty for the scan itself)")
    path_display = _display_of("path")
    error = serializers.CharField(help_text="Why; names in it have their control characters escaped")


class ScanRunSerializer(serializers.ModelSerializer):
    roots = serializers.ListField(child=serializers.CharField(), read_only=True)
    requested_by = UserBriefSerializer(read_only=True, allow_null=True)
    errors = ScanErrorSerializer(many=True, read_only=True, help_text="At most 200")

    class Meta:
        model = ScanRun
        fields = [
            "id",
            "state",
            "roots",
            "requested_by",
            "progress",
            "files_seen",
            "new",
            "changed",
            "unchanged",
            "removed",
            "failed",
            "errors",
            "task_id",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields
