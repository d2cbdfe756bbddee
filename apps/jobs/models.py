"""Jobs: units of work a worker runs (fine-tune, evaluate, benchmark, convert, self-test),
and the events each one logs while it runs."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.core.domain.queues import Queue
from apps.core.domain.roles import Role
from apps.core.models import TimeStamped
from apps.jobs.domain import datasets, kinds
from apps.jobs.domain.states import DATASET, JOB


class Dataset(TimeStamped):
    """A file of training or evaluation data under a dataset root (MOC_DATASET_ROOTS), read row by row.

    Registered like a model file: discovered by a scan of the roots or uploaded (written into the
    first root), never downloaded. Its rows are validated before any job may use it; the eval split
    is a seeded rule over row numbers (domain.datasets), so the same dataset always splits alike.
    """

    moc_write_role = Role.OPERATOR

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    root = models.CharField(max_length=1024, help_text="The dataset root it lies under")
    path = models.CharField(max_length=1024, help_text="Relative to its root")
    format = models.CharField(
        max_length=16, choices=datasets.FORMAT_CHOICES, help_text="jsonl or text, from the file's name"
    )
    shape = models.CharField(
        max_length=24,
        choices=datasets.SHAPE_CHOICES,
        blank=True,
        help_text="What each row holds: text, prompt/completion or chat messages (found by validation)",
    )
    source = models.CharField(
        max_length=16, choices=datasets.SOURCE_CHOICES, default=datasets.Source.DISCOVERED.value
    )
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    fingerprint = models.CharField(
        max_length=80,
        blank=True,
        help_text="size:mtime_ns:inode when last read; a re-scan skips it unchanged",
    )
    rows = models.PositiveIntegerField(default=0, help_text="Rows read by the latest validation")
    state = models.CharField(max_length=16, choices=DATASET.choices, default=DATASET.initial, db_index=True)
    errors = models.JSONField(
        default=list, blank=True, help_text='The bad rows, first ones: [{"row": 1-based number, "error"}]'
    )
    error_count = models.PositiveIntegerField(default=0, help_text="Bad rows in all (errors keeps the first)")
    validated_at = models.DateTimeField(null=True, blank=True)
    eval_share = models.FloatField(
        default=datasets.EVAL_SHARE_DEFAULT,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.9)],
        help_text="The share of rows held out for evaluation",
    )
    split_seed = models.PositiveIntegerField(default=0, help_text="Seeds the train/eval split")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    archived = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["root", "path"], name="jobs_dataset_root_path_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("jobs:dataset", args=[self.pk])

    @property
    def file_path(self) -> str:
        return str(Path(self.root) / self.path)


class Job(TimeStamped):
    """One unit of work, queued on a Celery queue and run by whichever worker takes it."""

    moc_write_role = Role.OPERATOR

    kind = models.CharField(max_length=16, choices=kinds.KIND_CHOICES, db_index=True)
    state = models.CharField(max_length=16, choices=JOB.choices, default=JOB.initial, db_index=True)
    priority = models.PositiveSmallIntegerField(
        default=kinds.PRIORITY_DEFAULT,
        validators=[MinValueValidator(kinds.PRIORITY_MIN), MaxValueValidator(kinds.PRIORITY_MAX)],
        help_text="0-100; higher runs first",
    )
    queue = models.CharField(
        max_length=100,
        default=Queue.DEFAULT.value,
        db_index=True,
        help_text="`default`, or a device's gpu.<node>.<index>",
    )
    params = models.JSONField(default=dict, blank=True)
    model_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    device = models.ForeignKey(
        "fleet.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    pinned_device = models.ForeignKey(
        "fleet.Device",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The device an operator pinned it to: it is only ever placed there, also after a "
        "yield, a lost worker or a retry (`device` is where it was placed last)",
    )
    reserved_bytes = models.PositiveBigIntegerField(
        default=0, help_text="Device memory held for it while it runs; the scheduler counts it as taken"
    )
    attempts = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker started it")
    max_attempts = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(kinds.MAX_ATTEMPTS_LIMIT)],
        help_text="Starts allowed before a job whose worker keeps getting lost is failed",
    )
    progress = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    message = models.CharField(
        max_length=300, blank=True, help_text="The runner's latest word on what it is doing"
    )
    error_class = models.CharField(max_length=32, blank=True, db_index=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    dataset = models.ForeignKey(
        Dataset,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
        help_text="The data a fine-tune trains on or an evaluation scores",
    )
    output_version = models.ForeignKey(
        "registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="made_by_jobs",
        help_text="The version it registered (a fine-tune's, a conversion's)",
    )
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
        help_text="The job an operator retried as this one; its checkpoints are resumed from",
    )
    wait_for_room = models.BooleanField(
        default=False,
        help_text="Wait in the queue when no device has room now, instead of being refused",
    )
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="An automatic retry waits until then (backoff)"
    )
    step = models.PositiveIntegerField(default=0, help_text="Steps done (optimiser steps, batches, ...)")
    total_steps = models.PositiveIntegerField(default=0, help_text="Steps it will take; 0 when unknown")
    eta_s = models.FloatField(null=True, blank=True, help_text="Estimated seconds left, from its recent pace")
    tokens_per_s = models.FloatField(null=True, blank=True, help_text="Its recent throughput")
    memory_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Device memory it used at its latest report"
    )
    stop_save = models.BooleanField(
        default=False, help_text="A cancel asked it to write a checkpoint before it stops"
    )
    preempt_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it was asked to checkpoint and yield its memory to a higher-priority need",
    )
    adjustments = models.JSONField(
        default=dict,
        blank=True,
        help_text="What MOC changed in its parameters while running it (an out-of-memory retry's batch)",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    queued_at = models.DateTimeField(
        default=timezone.now,
        help_text="When it last went into its queue: created, sent again, or put back after a lost worker",
    )
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the broker took its latest task message; empty until the send succeeds",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(
        max_length=200, blank=True, help_text="The Celery worker running it (or that last did)"
    )
    task_id = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="Its latest Celery task id"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "queue"], name="jobs_job_state_queue"),
            models.Index(fields=["state", "-priority", "queued_at"], name="jobs_job_waiting_order"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0.0, progress__lte=1.0), name="jobs_job_progress_fraction"
            ),
            models.CheckConstraint(
                condition=models.Q(max_attempts__gte=1), name="jobs_job_max_attempts_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"job #{self.pk} {self.kind}"

    def get_absolute_url(self) -> str:
        return reverse("jobs:detail", args=[self.pk])

    @property
    def terminal(self) -> bool:
        return self.state in JOB.terminal

    @property
    def percent(self) -> int:
        return round(self.progress * 100)


class JobEvent(models.Model):
    """One line of a job's log: progress, a check's outcome, an error."""

    moc_write_role = None  # written by the runner

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    level = models.CharField(max_length=8, choices=kinds.LEVEL_CHOICES, default=kinds.LogLevel.INFO.value)
    message = models.CharField(max_length=1000)
    data = models.JSONField(default=dict, blank=True, help_text="Details, e.g. a check's evidence")

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["job", "at"], name="jobs_event_job_at")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.level}: {self.message[:60]}"


class JobMetric(models.Model):
    """One point of one of a job's series (train_loss, eval_loss, learning_rate, tokens_per_s, ...)."""

    moc_write_role = None  # written by the runner

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=40)
    step = models.PositiveIntegerField()
    value = models.FloatField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "name", "step", "id"]
        indexes = [models.Index(fields=["job", "name", "step"], name="jobs_metric_job_name_step")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.name}@{self.step}={self.value:g}"


class JobCheckpoint(models.Model):
    """A complete checkpoint a fine-tune wrote (the runner's marker file is the truth; this row is
    what the page and API list). Rows go when the runner prunes their files (keep the last K)."""

    moc_write_role = None  # written by the runner

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=1024)
    size_bytes = models.PositiveBigIntegerField(default=0)
    reason = models.CharField(
        max_length=16, blank=True, help_text="interval, cancel, preempt, shutdown, out_of_memory, final"
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "step"]
        constraints = [
            models.UniqueConstraint(fields=["job", "step"], name="jobs_checkpoint_job_step_unique")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} checkpoint @{self.step}"
