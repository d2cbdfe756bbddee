"""The model registry's tables: registered models, their versions, the versions' files, aliases.

The app label is `registry` and no class is called `Model`, so `django.db.models` is never
shadowed (STYLE.md §1).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

from apps.core.domain.roles import Role
from apps.core.models import TimeStamped
from apps.models.domain import formats, naming
from apps.models.domain.formats import FileFormat
from apps.models.domain.states import SCAN, VALIDATION


class RegisteredModel(TimeStamped):
    """A named model (e.g. llama-3.1-8b) whose versions are the concrete weights."""

    moc_write_role = Role.OPERATOR

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True, help_text='Lower-case labels, e.g. ["llm", "chat"]')
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="registered_models",
    )
    archived = models.BooleanField(default=False, db_index=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # "Llama" and "llama" would be two models to the database but one to a person.
            models.UniqueConstraint(Lower("name"), name="registry_model_name_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("models:detail", args=[self.pk])


class ModelVersion(TimeStamped):
    """One concrete set of weights of a registered model, numbered 1, 2, 3 ... per model."""

    moc_write_role = Role.OPERATOR

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    format = models.CharField(max_length=16, choices=formats.MODEL_FORMAT_CHOICES, db_index=True)
    root = models.CharField(
        max_length=1024, blank=True, help_text="The configured model root it was found under"
    )
    path = models.CharField(max_length=1024, help_text="Absolute path of the version's folder or single file")
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, help_text="Of the weights file, or of the file list")
    metadata = models.JSONField(
        default=dict, blank=True, help_text="Architecture, dtypes, quantisation, context length, ..."
    )
    params_count = models.PositiveBigIntegerField(null=True, blank=True)
    validation_state = models.CharField(
        max_length=16, choices=VALIDATION.choices, default=VALIDATION.initial, db_index=True
    )
    validation_error = models.TextField(blank=True, help_text="Why the version is invalid")
    validated_at = models.DateTimeField(null=True, blank=True)
    estimated_vram_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Weights + runtime overhead + KV cache (see vram_estimate)"
    )
    vram_estimate = models.JSONField(
        default=dict,
        blank=True,
        help_text="The estimate's parts: weights, overhead and KV-cache bytes, and the context and batch",
    )
    validation_report = models.JSONField(
        default=list,
        blank=True,
        help_text='One line per check: {"check", "status": pass|warn|skip|fail, "detail", "file"}',
    )
    kind = models.CharField(
        max_length=32, blank=True, db_index=True, help_text="causal-lm, embedding, adapter, onnx-graph, ..."
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The version this one was derived from (fine-tuned from, quantised from)",
    )
    linked_base = models.CharField(
        max_length=1024,
        blank=True,
        help_text="The base path an adapter's adapter_config.json named when a scan set its parent",
    )
    lineage = models.JSONField(
        default=dict,
        blank=True,
        help_text="How it was made, when MOC made it: the job, its base version, dataset, parameters and "
        "final metrics",
    )
    evaluations = models.JSONField(
        default=dict,
        blank=True,
        help_text="Its latest evaluation per dataset: loss, perplexity, exact match, the job and when",
    )
    benchmark = models.JSONField(
        default=dict,
        blank=True,
        help_text="Its performance baseline from the latest benchmark job: load time, first-token and "
        "per-token latency, throughput, peak memory (the deployments' performance check reads it)",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    archived = models.BooleanField(default=False, db_index=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["model__name", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="registry_version_number_unique"),
            models.CheckConstraint(
                condition=models.Q(number__gte=1), name="registry_version_number_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("models:version", args=[self.pk])


class ModelFile(models.Model):
    """One file of a version, as discovery last saw it (size, checksum, mtime, inode)."""

    moc_write_role = None  # recorded by discovery; admins may repair

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024, help_text="Relative to the version's path")
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    format = models.CharField(max_length=16, choices=formats.FILE_FORMAT_CHOICES, default=FileFormat.OTHER)
    mtime = models.DateTimeField(null=True, blank=True)
    # With size and mtime, tells a re-scan that a file is unchanged without reading it.
    inode = models.PositiveBigIntegerField(null=True, blank=True)
    mtime_ns = models.BigIntegerField(null=True, blank=True, help_text="mtime as the file system gives it")
    checksummed = models.CharField(
        max_length=100,
        blank=True,
        help_text="The size:mtime_ns:inode the sha256 was computed for; another one means it is stale",
    )
    header = models.JSONField(
        default=dict, blank=True, help_text="What reading the file's header found (dtypes, tensors, keys)"
    )

    class Meta:
        ordering = ["version", "path"]
        constraints = [models.UniqueConstraint(fields=["version", "path"], name="registry_file_path_unique")]

    def __str__(self) -> str:
        return self.path


class ModelAlias(TimeStamped):
    """A stable name (production, staging) for one version of a model."""

    moc_write_role = Role.OPERATOR

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=40)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")

    class Meta:
        ordering = ["model__name", "name"]
        verbose_name_plural = "model aliases"
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="registry_alias_name_unique")]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"

    def clean(self) -> None:
        problem = naming.alias_problem(self.name)
        if problem:
            raise ValidationError({"name": problem})
        if self.model_id and self.version_id and self.version.model_id != self.model_id:
            raise ValidationError({"version": "The version must belong to the alias's model."})


class ScanRun(TimeStamped):
    """One walk of the model roots: what it found, changed and could not read."""

    moc_write_role = Role.OPERATOR

    state = models.CharField(max_length=16, choices=SCAN.choices, default=SCAN.initial, db_index=True)
    roots = models.JSONField(default=list, help_text="The model roots it walked")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.FloatField(default=0.0, help_text="0-1, files looked at of files found")
    files_seen = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0, help_text="Files not seen before")
    changed = models.PositiveIntegerField(default=0, help_text="Files whose size, mtime or inode moved")
    unchanged = models.PositiveIntegerField(default=0, help_text="Files skipped without reading")
    removed = models.PositiveIntegerField(default=0, help_text="Files gone since the last scan")
    failed = models.PositiveIntegerField(default=0, help_text="Files that could not be read or were refused")
    errors = models.JSONField(default=list, blank=True, help_text='[{"path", "error"}], at most 200')
    task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"scan {self.pk} ({self.state})"

    def get_absolute_url(self) -> str:
        return reverse("models:scan", args=[self.pk])
