from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.alerts.domain.catalog import rule_errors
from apps.alerts.domain.channels import ChannelKind, config_errors, redact_config, without_secret
from apps.alerts.domain.delivery import DeliveryStatus
from apps.alerts.domain.events import EVENT_LABELS, EventKind
from apps.alerts.domain.grouping import group_by_errors
from apps.alerts.domain.inhibition import equal_errors
from apps.alerts.domain.matchers import (
    SilenceStatus,
    format_matchers,
    matcher_errors,
    silence_status,
)
from apps.alerts.domain.rules import RULE_LABELS, Op, RuleKind, Severity
from apps.alerts.domain.states import ALERT, OPEN, ack_in_force
from apps.alerts.domain.templates import annotation_errors
from apps.core.domain.roles import Role
from apps.core.models import TimeStamped

OP_CHOICES = [(o.value, o.value) for o in Op]
SEVERITY_CHOICES = [(s.value, s.value.capitalize()) for s in Severity]
CHANNEL_KINDS = frozenset(k.value for k in ChannelKind)
CHANNEL_KIND_CHOICES = [
    (ChannelKind.WEBHOOK.value, "Webhook (Alertmanager format or your template)"),
    (ChannelKind.EMAIL.value, "Email"),
    (ChannelKind.ALERTMANAGER.value, "Forward to Alertmanager (API v2)"),
    (ChannelKind.LOG.value, "Log"),
]
RULE_KIND_CHOICES = [(k.value, k.value.capitalize()) for k in RuleKind]
EVENT_CHOICES = [(e.value, EVENT_LABELS[e]) for e in EventKind]
DELIVERY_STATUS_CHOICES = [(d.value, d.value.capitalize()) for d in DeliveryStatus]


def rule_problems(
    *,
    kind: str,
    metric: str,
    event: str,
    threshold: float | None,
    matchers: Sequence[Any],
    summary: str,
    description: str,
) -> dict[str, list[str]]:
    """What is wrong with a rule, by field: what the catalogue knows (the metric or event exists
    and has the matchers' labels, a threshold rule has its threshold) and whether its summary and
    description render over a sample alert. The one check AlertRule.clean() (admin, pages) and the
    API's serializer (DRF never calls clean()) both make, so nothing either refuses is saved by
    the other. The matchers' own shape is checked apart (matcher_errors)."""
    errors = rule_errors(kind=kind, metric=metric, event=event, threshold=threshold, matchers=matchers)
    for field, text in (("summary", summary), ("description", description)):
        if problems := annotation_errors(text or ""):
            errors.setdefault(field, []).extend(problems)
    return errors


class AlertRule(TimeStamped):
    """A threshold on a metric (alert when `metric op threshold` holds for `for_seconds`), or an
    event rule (alert when an event of its kind happens, e.g. a job failed)."""

    moc_write_role = Role.ADMIN

    name = models.CharField(max_length=100, unique=True, help_text="Becomes the alert's `alertname` label.")
    kind = models.CharField(max_length=10, choices=RULE_KIND_CHOICES, default=RuleKind.THRESHOLD.value)
    summary = models.CharField(
        max_length=300,
        blank=True,
        help_text="The alert's one-line summary; {{ labels.node }} and {{ value }} are filled in.",
    )
    description = models.TextField(
        blank=True, help_text="The alert's description; {{ labels.<name> }} and {{ value }} are filled in."
    )
    metric = models.CharField(
        max_length=200,
        blank=True,
        db_index=True,
        help_text="Threshold rules: a metric of /metrics, e.g. DCGM_FI_DEV_GPU_TEMP",
    )
    op = models.CharField(max_length=2, choices=OP_CHOICES, default=Op.GT.value)
    threshold = models.FloatField(null=True, blank=True, help_text="Threshold rules: the value compared with")
    event = models.CharField(
        max_length=32,
        choices=EVENT_CHOICES,
        blank=True,
        db_index=True,
        help_text="Event rules: what happened",
    )
    for_seconds = models.PositiveIntegerField(
        default=0, help_text="How long the condition must hold before the alert fires (pending until then)."
    )
    keep_firing_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Threshold rules: how long an alert keeps firing after its condition stops (against "
        "flapping). Event rules: how long the alert stays firing after the event.",
    )
    channels = models.ManyToManyField(
        "NotificationChannel", blank=True, related_name="rules", help_text="Where its alerts are notified"
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
        errors: dict[str, list[str]] = {}
        if problems := matcher_errors(self.matchers, require_one=False):
            errors["matchers"] = problems
        named = rule_problems(
            kind=self.kind,
            metric=self.metric,
            event=self.event,
            threshold=self.threshold,
            matchers=[] if problems else self.matchers,
            summary=self.summary,
            description=self.description,
        )
        for field, messages in named.items():
            errors.setdefault(field, []).extend(messages)
        if errors:
            raise ValidationError(errors)

    @property
    def is_event(self) -> bool:
        return self.kind == RuleKind.EVENT

    @property
    def condition(self) -> str:
        if self.is_event:
            return f"event {self.event}"
        threshold = "?" if self.threshold is None else f"{self.threshold:g}"
        return f"{self.metric} {self.op} {threshold}"

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
    annotations = models.JSONField(default=dict, blank=True, help_text="summary and description, filled in")
    value = models.FloatField(null=True, blank=True, help_text="The latest observed value.")
    fired_value = models.FloatField(null=True, blank=True, help_text="The value when it fired.")
    peak_value = models.FloatField(null=True, blank=True, help_text="The value furthest past the threshold.")
    started_at = models.DateTimeField(help_text="When the condition started holding.")
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_breach_at = models.DateTimeField(
        null=True, blank=True, help_text="When the condition last held (keep-firing counts from here)."
    )
    occurrences = models.PositiveIntegerField(default=1, help_text="Event alerts: times the event happened")
    silenced = models.BooleanField(default=False, db_index=True, help_text="An active silence matches it")
    inhibited = models.BooleanField(default=False, db_index=True, help_text="A firing alert inhibits it")
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    ack_comment = models.TextField(blank=True)
    ack_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Repeats are muted until then (or until it resolves)."
    )

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
    def acknowledged(self) -> bool:
        """Acknowledged and the acknowledgement has not expired."""
        return ack_in_force(self.acknowledged_at, self.ack_expires_at, timezone.now())

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
    alert = models.ForeignKey(
        Alert,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="silences",
        help_text="The alert it was made from, if any",
    )
    expire_on_resolve = models.BooleanField(
        default=False, help_text="End the silence when the alert it was made from resolves"
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


# Who sees a channel's whole config (the signing secret aside) and what its deliveries sent.
CHANGE_CHANNEL = "alerts.change_notificationchannel"


def default_group_by() -> list[str]:
    return ["alertname"]


class NotificationChannel(TimeStamped):
    """Where notifications about alerts go."""

    moc_write_role = Role.ADMIN
    # Webhook URLs and addresses often carry tokens: never copied into the audit log.
    moc_audit_redact = ("config",)

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=CHANNEL_KIND_CHOICES, db_index=True)
    config = models.JSONField(default=dict, help_text='Settings for the kind, e.g. {"url": "https://…"}.')
    enabled = models.BooleanField(default=True, db_index=True)
    send_resolved = models.BooleanField(default=True, help_text="Also notify when an alert resolves.")
    group_by = models.JSONField(
        default=default_group_by,
        blank=True,
        help_text='Labels whose values split notifications into groups, e.g. ["alertname", "node"]; '
        '["..."] notifies each alert on its own.',
    )
    group_wait_s = models.PositiveIntegerField(
        default=30, help_text="How long a new group waits for more alerts before its first notification"
    )
    group_interval_s = models.PositiveIntegerField(
        default=300, help_text="How long a group waits before notifying about alerts added to it"
    )
    repeat_interval_s = models.PositiveIntegerField(
        default=14_400, help_text="How long before a group whose alerts still fire is notified again"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("alerts:channel_detail", args=[self.pk])

    def shown_config(self, *, may_change: bool) -> dict[str, Any]:
        """The config as people see it (the API, the pages): never the signing secret; the rest
        whole to those who may change the channel, redacted to the others (redact_config)."""
        config = without_secret(self.config)
        return config if may_change else redact_config(self.kind, config)

    def clean(self) -> None:
        # An unknown kind is reported by the field's own choices check.
        errors = {}
        if self.kind in CHANNEL_KINDS and (problems := config_errors(self.kind, self.config)):
            errors["config"] = problems
        if problems := group_by_errors(self.group_by):
            errors["group_by"] = problems
        if errors:
            raise ValidationError(errors)


class InhibitRule(TimeStamped):
    """While an alert matching the source matchers fires, alerts matching the target matchers that
    have the same values of the `equal` labels are muted (a node that is down mutes its devices)."""

    moc_write_role = Role.ADMIN

    name = models.CharField(max_length=100, unique=True)
    source_matchers = models.JSONField(
        help_text='The muting alert: [{"label": "alertname", "op": "=", "value": "NodeDown"}]'
    )
    target_matchers = models.JSONField(
        help_text='The muted alerts: [{"label": "device", "op": "=~", "value": ".+"}]'
    )
    equal = models.JSONField(default=list, blank=True, help_text='Labels both must share, e.g. ["node"]')
    enabled = models.BooleanField(default=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        for field in ("source_matchers", "target_matchers"):
            if problems := matcher_errors(getattr(self, field), require_one=True):
                errors[field] = problems
        if problems := equal_errors(self.equal):
            errors["equal"] = problems
        if errors:
            raise ValidationError(errors)


class NotificationGroup(models.Model):
    """What a channel was last told about one group of alerts (Alertmanager's aggregation group):
    when the group was first seen and last notified, and each alert's status in that notification."""

    moc_write_role = None  # written by the notifier

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="groups")
    key = models.CharField(max_length=64, help_text="A hash of the group's labels")
    labels = models.JSONField(default=dict, help_text="The group's labels (the channel's group_by)")
    first_seen_at = models.DateTimeField()
    last_sent_at = models.DateTimeField(null=True, blank=True)
    sent = models.JSONField(default=dict, blank=True, help_text="fingerprint -> status, as last notified")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "key"], name="alerts_group_once_per_channel")
        ]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.key}"


class Delivery(models.Model):
    """One notification to one channel, with its attempts: what was sent and what came back."""

    moc_write_role = None  # written by the notifier
    # A templated webhook body can carry the receiver's key (PagerDuty's routing_key), and viewers
    # read the audit log: a test send made from a request is recorded without it.
    moc_audit_redact = ("body",)

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    group_key = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=10, choices=DELIVERY_STATUS_CHOICES, default=DeliveryStatus.PENDING.value, db_index=True
    )
    firing = models.PositiveIntegerField(default=0, help_text="Firing alerts in it")
    resolved = models.PositiveIntegerField(default=0, help_text="Resolved alerts in it")
    fingerprints = models.JSONField(default=list, blank=True)
    body = models.TextField(help_text="What is (or was) sent")
    test = models.BooleanField(default=False, help_text="A test notification sent by hand")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the last attempt failed")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["channel", "created_at"], name="alerts_delivery_channel_at")]

    def __str__(self) -> str:
        return f"delivery {self.pk} to {self.channel_id}: {self.status}"
