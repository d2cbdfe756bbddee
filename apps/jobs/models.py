"""Jobs: units of work a worker runs (fine-tune, evaluate, benchmark, convert, self-test),
and the events each one logs while it runs."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.core.domain.queues import Queue
from apps.core.domain.roles import Role
from apps.core.models import TimeStamped
from apps.jobs.domain import kinds
from apps.jobs.domain.states import JOB


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
        indexes = [models.Index(fields=["state", "queue"], name="jobs_job_state_queue")]
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
