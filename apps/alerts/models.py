from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.alerts.domain.channels import ChannelKind, config_errors, redact_config
from apps.alerts.domain.matchers import SilenceStatus, format_matchers, matcher_errors, silence_status
from apps.alerts.domain.rules import METRIC_NAME, METRIC_NAME_HELP, RULE_LABELS, Op, Severity
from apps.alerts.domain.states import ALERT, OPEN
from apps.core.domain.roles import Role
from apps.core.models import TimeStamped

OP_CHOICES = [(o.value, o.value) for o in Op]
SEVERITY_CHOICES = [(s.value, s.value.capitalize()) for s in Severity]
CHANNEL_KINDS = frozenset(k.value for k in ChannelKind)
CHANNEL_KIND_CHOICES = [
    (ChannelKind.WEBHOOK.value, "Webhook (Alertmanager format)"),
    (ChannelKind.EMAIL.value, "Email"),
    (ChannelKind.LOG.value, "Log"),
]


class AlertRule(TimeStamped):
    """A threshold on a metric: alert when `metric op threshold` holds for `for_seconds`."""

    moc_write_role = Role.ADMIN

    name = models.CharField(max_length=100, unique=True, help_text="Becomes the alert's `alertname` label.")
    description = models.TextField(blank=True)
    metric = models.CharField(max_length=200, db_index=True, help_text="e.g. gpu_temperature_celsius")
    op = models.CharField(max_length=2, choices=OP_CHOICES, default=Op.GT.value)
    threshold = models.FloatField()
    for_seconds = models.PositiveIntegerField(
        default=0, help_text="How long the condition must hold before the alert fires."
    )
    severity = models.CharField(
        max_length=10, choices=SEVERITY_CHOICES, default=Severity.WARNING.value, db_index=True
    )
    matchers = models.JSONField(
        default=list,
        blank=True,
        help_text='Which series the rule watches: [{"label": "node", "op": "=~", "value": "gpu-.*"}]; '
        "empty watches all.",
    )
    enabled = models.BooleanField(default=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("alerts:rule_detail", args=[self.pk])

    def clean(self) -> None:
        errors = {}
        if self.metric and not METRIC_NAME.fullmatch(self.metric):
            errors["metric"] = [METRIC_NAME_HELP]
        if problems := matcher_errors(self.matchers, require_one=False):
            errors["matchers"] = problems
        if errors:
            raise ValidationError(errors)

    @property
    def condition(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    @property
    def matchers_text(self) -> str:
        return format_matchers(self.matchers)


class Alert(TimeStamped):
    """One occurrence of a rule's condition on one label set, from pending to resolved."""

    # Operators acknowledge alerts; MOC itself opens, fires and resolves them.
    moc_write_role = Role.OPERATOR

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    fingerprint = models.CharField(max_length=16, db_index=True)
    labels = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=ALERT.choices, default=ALERT.initial, db_index=True)
    value = models.FloatField(null=True, blank=True, help_text="The latest observed value.")
    started_at = models.DateTimeField(help_text="When the condition started holding.")
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # A new occurrence is a new alert, but only once the previous one resolved.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(state__in=sorted(OPEN)),
                name="alert_one_open_per_fingerprint",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} [{self.fingerprint}] {self.state}"

    def get_absolute_url(self) -> str:
        return reverse("alerts:detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.state in OPEN

    @property
    def series_labels(self) -> dict[str, str]:
        """The labels of the watched series, without the two the rule adds."""
        return {k: v for k, v in self.labels.items() if k not in RULE_LABELS}


class Silence(TimeStamped):
    """Mutes notifications for alerts whose labels match, between starts_at and ends_at."""

    moc_write_role = Role.OPERATOR

    matchers = models.JSONField(help_text='[{"label": "node", "op": "=", "value": "gpu-01"}]')
    starts_at = models.DateTimeField(db_index=True)
    ends_at = models.DateTimeField(db_index=True)
    comment = models.TextField(help_text="Why, so others know when it can go.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-ends_at", "-id"]
        constraints = [
            # Equal only once expired before it started (see services.silence_expire).
            models.CheckConstraint(
                condition=models.Q(ends_at__gte=models.F("starts_at")), name="silence_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"silence {self.pk}: {self.matchers_text}"

    def clean(self) -> None:
        errors = {}
        if problems := matcher_errors(self.matchers, require_one=True):
            errors["matchers"] = problems
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = ["must be after starts_at"]
        if errors:
            raise ValidationError(errors)

    @property
    def status(self) -> SilenceStatus:
        return silence_status(self.starts_at, self.ends_at, timezone.now())

    @property
    def matchers_text(self) -> str:
        return format_matchers(self.matchers)


class NotificationChannel(TimeStamped):
    """Where notifications about alerts go."""

    moc_write_role = Role.ADMIN
    # Webhook URLs and addresses often carry tokens: never copied into the audit log.
    moc_audit_redact = ("config",)

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=CHANNEL_KIND_CHOICES, db_index=True)
    config = models.JSONField(default=dict, help_text='Settings for the kind, e.g. {"url": "https://…"}.')
    enabled = models.BooleanField(default=True, db_index=True)
    send_resolved = models.BooleanField(default=True, help_text="Also notify when an alert resolves.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def shown_config(self) -> dict:
        return redact_config(self.kind, self.config)

    def clean(self) -> None:
        # An unknown kind is reported by the field's own choices check.
        errors = config_errors(self.kind, self.config) if self.kind in CHANNEL_KINDS else []
        if errors:
            raise ValidationError({"config": errors})
