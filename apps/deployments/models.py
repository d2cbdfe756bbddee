"""Deployments (named serving endpoints), their releases (a version rolled out with a
strategy), and the verification runs and check results that gate each release."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.urls import reverse

from apps.core.domain.roles import Role
from apps.core.models import TimeStamped
from apps.deployments.domain import naming
from apps.deployments.domain.checks import CHECK_NAME_CHOICES, CHECK_STATUS_CHOICES
from apps.deployments.domain.states import DEPLOYMENT, RELEASE, RELEASE_OPEN, VERIFICATION
from apps.deployments.domain.strategy import STRATEGY_CHOICES, Strategy

MAX_REPLICAS = 64


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
    replicas = models.PositiveSmallIntegerField(default=1, validators=[MaxValueValidator(MAX_REPLICAS)])
    strategy = models.CharField(
        max_length=16,
        choices=STRATEGY_CHOICES,
        default=Strategy.ALL_AT_ONCE.value,
        help_text="The strategy new releases use unless they name one",
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


class Release(TimeStamped):
    """A model version rolled out to a deployment with a strategy, verified, then promoted or rolled back."""

    moc_write_role = Role.OPERATOR

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="releases")
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="releases"
    )
    strategy = models.CharField(max_length=16, choices=STRATEGY_CHOICES, default=Strategy.ALL_AT_ONCE.value)
    canary_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(99)],
        help_text="Canary only: the share of traffic it starts with",
    )
    state = models.CharField(max_length=16, choices=RELEASE.choices, default=RELEASE.initial, db_index=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why it ended as it did")
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
                condition=models.Q(canary_percent__lte=99), name="deployments_release_canary_percent"
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
