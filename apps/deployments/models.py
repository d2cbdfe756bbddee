"""Deployments (named serving endpoints), their releases (a version rolled out with a
strategy), and the verification runs and check results that gate each release."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from apps.core.domain.roles import Role
from apps.core.models import ApiKey, TimeStamped
from apps.deployments.domain import naming
from apps.deployments.domain.checks import CHECK_NAME_CHOICES, CHECK_STATUS_CHOICES, all_check_names
from apps.deployments.domain.states import (
    DEPLOYMENT,
    ENVIRONMENT_CHOICES,
    ON_INCONCLUSIVE_CHOICES,
    RELEASE,
    RELEASE_OPEN,
    VERIFICATION,
    Environment,
    OnInconclusive,
)
from apps.deployments.domain.strategy import DEFAULT_CANARY_STEPS, STRATEGY_CHOICES, Strategy

MAX_REPLICAS = 64
# A canary step's pause and timeout, the blue-green window and the abort grace: at most a week, a
# bound that keeps every date computed from them (now + the window) far inside what a date can hold.
MAX_WINDOW_S = 7 * 86_400


def default_canary_steps() -> list[int]:
    return list(DEFAULT_CANARY_STEPS)


class Deployment(TimeStamped):
    """A named serving endpoint: which model it serves, how many replicas, which release is live."""

    moc_write_role = Role.OPERATOR

    name = models.SlugField(max_length=63, unique=True, help_text="Part of the endpoint's URL; cannot change")
    description = models.TextField(blank=True)
    state = models.CharField(
        max_length=16, choices=DEPLOYMENT.choices, default=DEPLOYMENT.initial, db_index=True
    )
    registered_model = models.ForeignKey(
        "registry.RegisteredModel",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deployments",
        help_text="The model it serves; its releases roll out versions of this model",
    )
    current_release = models.ForeignKey(
        "Release",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The stable release serving now",
    )
    environment = models.CharField(
        max_length=16,
        choices=ENVIRONMENT_CHOICES,
        default=Environment.STAGING.value,
        db_index=True,
        help_text="A version reaches production only after its verification passed in staging",
    )
    replicas = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(MAX_REPLICAS)],
        help_text="Placements of the live version kept loaded",
    )
    strategy = models.CharField(
        max_length=16,
        choices=STRATEGY_CHOICES,
        default=Strategy.RECREATE.value,
        help_text="The strategy new releases use unless they name one",
    )
    # Placement constraints: where the replicas may go (both empty: anywhere the scheduler likes).
    node = models.CharField(max_length=100, blank=True, help_text="Place replicas on this node only")
    device = models.ForeignKey(
        "fleet.Device",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Place replicas on this device only",
    )
    # The deployment's bulkhead (empty: the serving defaults).
    max_concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests to the deployment served at once; empty: the default"
    )
    max_queue = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests that may wait for a slot; past it they get 429"
    )
    # SLOs: also the absolute thresholds a canary's analysis holds it to.
    slo_p99_ms = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.001)], help_text="p99 latency objective (ms)"
    )
    slo_error_rate = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Error-rate objective, a share between 0 and 1",
    )
    required_checks = models.JSONField(
        default=all_check_names,
        blank=True,
        help_text="Verification checks whose failure stops a release; the others only warn",
    )
    golden_set = models.JSONField(
        default=list,
        blank=True,
        help_text='Quality check: [{"prompt": ..., "expected": ..., "match": "exact|contains|similarity", '
        '"tolerance": 0.8}]',
    )
    # How a canary is analysed.
    canary_steps = models.JSONField(
        default=default_canary_steps, blank=True, help_text="Canary traffic steps in percent, ending at 100"
    )
    step_pause_s = models.PositiveIntegerField(
        default=60,
        validators=[MaxValueValidator(MAX_WINDOW_S)],
        help_text="How long each canary step runs before its analysis decides (at most 7 days)",
    )
    step_timeout_s = models.PositiveIntegerField(
        default=300,
        validators=[MaxValueValidator(MAX_WINDOW_S)],
        help_text="How much longer a step may wait for enough requests before it is inconclusive "
        "(at most 7 days)",
    )
    min_samples = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1)],
        help_text="Requests each side needs in a step's window before a metric can judge it",
    )
    p99_ratio_max = models.FloatField(
        default=1.5,
        validators=[MinValueValidator(1.0)],
        help_text="A canary fails when its p99 exceeds stable's by more than this factor (latency is "
        "resolved to about 10%: a factor under 1.1 compares finer than that)",
    )
    error_rate_delta_max = models.FloatField(
        default=0.02,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A canary fails when its error rate exceeds stable's by more than this",
    )
    on_inconclusive = models.CharField(
        max_length=16,
        choices=ON_INCONCLUSIVE_CHOICES,
        default=OnInconclusive.PAUSE.value,
        help_text="What an inconclusive analysis does: pause for a person, or roll back",
    )
    blue_green_keep_s = models.PositiveIntegerField(
        default=300,
        validators=[MaxValueValidator(MAX_WINDOW_S)],
        help_text="Blue-green: how long the old release stays loaded after the switch (at most 7 days)",
    )
    abort_grace_s = models.PositiveIntegerField(
        default=30,
        validators=[MaxValueValidator(MAX_WINDOW_S)],
        help_text="How long an aborted release stays loaded after traffic left it (at most 7 days)",
    )
    # Serving on demand: a request that finds nothing loaded wakes the deployment (loads its stable
    # release) and waits; an idle deployment that is not pinned goes back to zero replicas.
    pinned = models.BooleanField(
        default=False,
        help_text="Keep the stable release's replicas loaded while idle; unpinned, they are unloaded "
        "after the keep-alive and loaded again by the next request",
    )
    keep_alive_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_WINDOW_S)],
        help_text="Idle seconds before an unpinned deployment scales to zero (blank: "
        "MOC_DEPLOYMENT_KEEP_ALIVE_S)",
    )
    wake_timeout_s = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text="How long a request waits for a sleeping deployment to load before it is refused",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who answers for it (its creator unless given)",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(replicas__lte=MAX_REPLICAS), name="deployments_deployment_replicas_max"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("deployments:detail", args=[self.name])

    def clean(self) -> None:
        problem = naming.name_problem(self.name)
        if problem:
            raise ValidationError({"name": problem})


# A deployment's settings by group, in the order the API and the settings page give them: the one
# list the API's fields, the settings form, the admin's fieldsets and services.EDITABLE are built from.
PLACEMENT_FIELDS = ("replicas", "strategy", "node", "device")
BULKHEAD_FIELDS = ("max_concurrency", "max_queue")
SLO_FIELDS = ("slo_p99_ms", "slo_error_rate")
VERIFICATION_FIELDS = ("required_checks", "golden_set")
ANALYSIS_FIELDS = (
    "canary_steps",
    "step_pause_s",
    "step_timeout_s",
    "min_samples",
    "p99_ratio_max",
    "error_rate_delta_max",
    "on_inconclusive",
)
ROLLBACK_WINDOW_FIELDS = ("blue_green_keep_s", "abort_grace_s")
ON_DEMAND_FIELDS = ("pinned", "keep_alive_s", "wake_timeout_s")
SETTINGS_FIELDS = (
    *PLACEMENT_FIELDS,
    *ON_DEMAND_FIELDS,
    *BULKHEAD_FIELDS,
    *SLO_FIELDS,
    *VERIFICATION_FIELDS,
    *ANALYSIS_FIELDS,
    *ROLLBACK_WINDOW_FIELDS,
)
# Every field deployment create and update take: the settings, and the model and the owner, which
# the settings page leaves to the API and the admin. The name is set once, at create.
EDITABLE_FIELDS = ("description", "environment", "registered_model", *SETTINGS_FIELDS, "owner")


class Release(TimeStamped):
    """A model version rolled out to a deployment with a strategy, verified, then promoted or rolled back."""

    moc_write_role = Role.OPERATOR

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="releases")
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="releases"
    )
    strategy = models.CharField(max_length=16, choices=STRATEGY_CHOICES, default=Strategy.RECREATE.value)
    steps = models.JSONField(default=list, blank=True, help_text="Canary only: traffic steps in percent")
    step_index = models.PositiveSmallIntegerField(default=0, help_text="Canary: the step it is on (0-based)")
    step_started_at = models.DateTimeField(null=True, blank=True)
    traffic_percent = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(100)], help_text="The share of traffic it takes now"
    )
    state = models.CharField(max_length=16, choices=RELEASE.choices, default=RELEASE.initial, db_index=True)
    resume_to = models.CharField(
        max_length=16, blank=True, help_text="Paused: the state it goes back to when resumed"
    )
    reason = models.CharField(max_length=300, blank=True, help_text="Why it is paused, or ended as it did")
    previous_release = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The stable release when it started: where a rollback returns traffic",
    )
    gate_overridden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The admin who released it to production without a passed staging verification",
    )
    previous_kept_until = models.DateTimeField(
        null=True, blank=True, help_text="Blue-green: the old release stays loaded until then"
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    analysis_baseline = models.JSONField(
        default=dict,
        blank=True,
        help_text="The canary's and stable's request totals when its current step began: the step's "
        "window is measured from them",
    )
    placements = models.ManyToManyField(
        "serving.Placement",
        blank=True,
        related_name="releases",
        help_text="The replicas serving this release",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two releases rolling out to one deployment at once would fight over its traffic.
            models.UniqueConstraint(
                fields=["deployment"],
                condition=models.Q(state__in=sorted(RELEASE_OPEN)),
                name="deployments_release_one_open",
                violation_error_message="This deployment already has a release in progress.",
            ),
            models.CheckConstraint(
                condition=models.Q(traffic_percent__lte=100), name="deployments_release_traffic_percent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment.name} #{self.pk}"

    def get_absolute_url(self) -> str:
        return f"{self.deployment.get_absolute_url()}#release-{self.pk}"


class VerificationRun(TimeStamped):
    """One pass of the verification checks over a release."""

    moc_write_role = None  # run by MOC's workers

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="verification_runs")
    state = models.CharField(
        max_length=16, choices=VERIFICATION.choices, default=VERIFICATION.initial, db_index=True
    )
    error = models.TextField(blank=True, help_text="Why the run itself broke (state errored)")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"verification #{self.pk} of {self.release}"


class CheckResult(models.Model):
    """One check of a verification run: its status, how long it took, why, and the evidence."""

    moc_write_role = None

    run = models.ForeignKey(VerificationRun, on_delete=models.CASCADE, related_name="checks")
    name = models.CharField(max_length=16, choices=CHECK_NAME_CHOICES, db_index=True)
    status = models.CharField(max_length=8, choices=CHECK_STATUS_CHOICES, db_index=True)
    required = models.BooleanField(default=True, help_text="A failed required check fails the run")
    duration_ms = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=300, blank=True, help_text="One line: why this status")
    evidence = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="deployments_check_once_per_run")]

    def __str__(self) -> str:
        return f"{self.name}: {self.status}"


class ReleaseEvent(models.Model):
    """One entry of a release's timeline: a transition, a traffic change, an analysis, a check run;
    who or what caused it, and why. The "who served what when" record."""

    moc_write_role = None  # written by the rollout engine

    class Cause(models.TextChoices):
        OPERATOR = "operator", "Operator"
        ANALYSIS = "analysis", "Analysis"
        VERIFICATION = "verification", "Verification"
        ENGINE = "engine", "Rollout engine"
        OVERRIDE = "override", "Admin override"

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=16, help_text="transition, traffic, analysis, verification, note")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16, blank=True)
    traffic_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The release's share of traffic after this event"
    )
    cause = models.CharField(max_length=16, choices=Cause.choices, default=Cause.ENGINE)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.release}: {self.kind} {self.message[:60]}"


class KeyGrant(models.Model):
    """Limits an API key to some deployments: a key with grants may call only those through the data
    plane (/v1); a key with none may call every deployment its role may."""

    moc_write_role = Role.ADMIN

    key = models.ForeignKey("core.ApiKey", on_delete=models.CASCADE, related_name="deployment_grants")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="key_grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment", "key"]
        constraints = [models.UniqueConstraint(fields=["key", "deployment"], name="deployments_grant_once")]
        verbose_name = "API key grant"

    def __str__(self) -> str:
        return f"{self.key} may call {self.deployment}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A granted key is limited for good, however the grant was made (the API, the admin's
        inline or list): taking its grants back later leaves it calling none, never all."""
        super().save(*args, **kwargs)
        ApiKey.objects.filter(pk=self.key_id, limited=False).update(limited=True)


class ServingMinute(models.Model):
    """One minute of one release's serving figures, rolled up from the live figures in Redis and
    kept for MOC_SERVING_FIGURES_RETENTION_DAYS: the deployment page's history and the baseline its
    anomaly badge compares the last minutes with. Latencies in ms; None where nothing measured it."""

    moc_write_role = None  # written by the rollup task

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="minutes")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="minutes")
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField(db_index=True, help_text="The minute's start (UTC)")
    requests = models.PositiveIntegerField(default=0, help_text="Every request counted, refused included")
    ok = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0, help_text="Input the model refused")
    refused = models.PositiveIntegerField(default=0, help_text="Refused before the model (busy, broker)")
    refusals = models.JSONField(default=dict, blank=True, help_text="Refused requests by reason")
    good = models.PositiveIntegerField(default=0, help_text="Answered within the deployment's SLO (goodput)")
    latency_p50_ms = models.FloatField(null=True, blank=True)
    latency_p99_ms = models.FloatField(null=True, blank=True)
    ttft_p50_ms = models.FloatField(null=True, blank=True, help_text="Time to first token")
    ttft_p99_ms = models.FloatField(null=True, blank=True)
    itl_p50_ms = models.FloatField(null=True, blank=True, help_text="Inter-token latency")
    itl_p99_ms = models.FloatField(null=True, blank=True)
    queue_p50_ms = models.FloatField(null=True, blank=True, help_text="Wait before a worker took it")
    queue_p99_ms = models.FloatField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(default=0, help_text="Output tokens generated")

    class Meta:
        ordering = ["-minute", "release"]
        constraints = [
            models.UniqueConstraint(fields=["release", "minute"], name="deployments_minute_once_per_release")
        ]
        indexes = [models.Index(fields=["deployment", "minute"], name="deployments_minute_dep")]

    def __str__(self) -> str:
        return f"{self.deployment_id}/{self.release_id} @ {self.minute:%H:%M}"
