from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.alerts import selectors
from apps.alerts.domain.catalog import rule_errors
from apps.alerts.domain.channels import (
    HIDDEN,
    SECRET,
    config_errors,
    with_kept_secret,
)
from apps.alerts.domain.grouping import group_by_errors
from apps.alerts.domain.inhibition import equal_errors
from apps.alerts.domain.matchers import MatchOp, format_matchers, matcher_errors, parse_matchers
from apps.alerts.domain.rules import RuleKind
from apps.alerts.models import (
    CHANGE_CHANNEL,
    CHANNEL_KINDS,
    OP_CHOICES,
    SEVERITY_CHOICES,
    Alert,
    AlertRule,
    Delivery,
    InhibitRule,
    NotificationChannel,
    Silence,
    rule_problems,
)
from apps.core.api.permissions import request_has_perm
from apps.core.api.serializers import UserBriefSerializer


def _may_change_channels(serializer: serializers.Serializer) -> bool:
    request = serializer.context.get("request")
    return request is not None and request_has_perm(request, CHANGE_CHANNEL)


class AlertRuleBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertRule
        fields = ["id", "name", "severity"]


class MatcherSerializer(serializers.Serializer):
    """One label matcher, as in Alertmanager (documents the shape; lists are validated whole)."""

    label = serializers.CharField()
    op = serializers.ChoiceField(choices=[(o.value, o.value) for o in MatchOp])
    value = serializers.CharField(allow_blank=True)


@extend_schema_field(
    {
        "oneOf": [
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string"},
                        "op": {"type": "string", "enum": [o.value for o in MatchOp]},
                        "value": {"type": "string"},
                    },
                    "required": ["label", "op", "value"],
                },
            },
            {"type": "string", "example": 'node=~"gpu-0[12]", device="0"'},
        ]
    }
)
class MatchersField(serializers.JSONField):
    """Label matchers as a list of {label, op, value}, or in Alertmanager's text form
    (`node=~"gpu-0[12]", device="0"`); always answered as the list."""

    def __init__(self, *, require_one: bool = False, **kwargs: Any) -> None:
        self.require_one = require_one
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = parse_matchers(data)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from exc
        else:
            data = super().to_internal_value(data)
        if errors := matcher_errors(data, require_one=self.require_one):
            raise serializers.ValidationError(errors)
        return data


def _current(serializer: serializers.Serializer, attrs: dict[str, Any], name: str, default: Any) -> Any:
    """A field's value after this write: the new one, else the saved one (PATCH), else the default."""
    if name in attrs:
        return attrs[name]
    return getattr(serializer.instance, name, default) if serializer.instance is not None else default


class AlertRuleSerializer(serializers.ModelSerializer):
    matchers = MatchersField(
        required=False,
        help_text='Series it watches: [{"label", "op", "value"}] or `node=~"gpu-.*"`; empty watches all',
    )
    matchers_text = serializers.SerializerMethodField(help_text="The matchers in Alertmanager's text form")
    channels = serializers.PrimaryKeyRelatedField(
        many=True,
        required=False,
        queryset=NotificationChannel.objects.all(),
        help_text="Ids of the notification channels its alerts go to",
    )
    # default: a rule just created, not read through the annotated queryset, has none yet.
    open_alerts = serializers.IntegerField(
        read_only=True, default=0, help_text="Pending or firing alerts of this rule"
    )

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "name",
            "kind",
            "event",
            "metric",
            "op",
            "threshold",
            "for_seconds",
            "keep_firing_seconds",
            "severity",
            "matchers",
            "matchers_text",
            "summary",
            "description",
            "channels",
            "enabled",
            "open_alerts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "open_alerts", "created_at", "updated_at"]

    def get_matchers_text(self, rule: AlertRule) -> str:
        return rule.matchers_text

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's own check (AlertRule.clean), which DRF does not call; the matchers' shape is
        # MatchersField's.
        errors = rule_problems(
            kind=_current(self, attrs, "kind", RuleKind.THRESHOLD.value),
            metric=_current(self, attrs, "metric", ""),
            event=_current(self, attrs, "event", ""),
            threshold=_current(self, attrs, "threshold", None),
            matchers=_current(self, attrs, "matchers", []),
            summary=_current(self, attrs, "summary", ""),
            description=_current(self, attrs, "description", ""),
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^(" + "|".join(value for value, _ in OP_CHOICES) + ")$",
        "description": "The comparison, as AlertRule.op: " + ", ".join(value for value, _ in OP_CHOICES),
    }
)
class _OpField(serializers.ChoiceField):
    """AlertRule.op's choices, described by a pattern: as an enum, a second component with the same
    choices as AlertRule would collide with the matchers' `op` in drf-spectacular's enum naming."""


class RulePreviewInput(serializers.Serializer):
    """An unsaved threshold rule, as the rule editor has it."""

    name = serializers.CharField(max_length=100, required=False, default="preview")
    metric = serializers.CharField(max_length=200)
    op = _OpField(choices=OP_CHOICES, default=">")
    threshold = serializers.FloatField(required=False, allow_null=True, default=None)
    for_seconds = serializers.IntegerField(min_value=0, default=0)
    keep_firing_seconds = serializers.IntegerField(min_value=0, default=0)
    severity = serializers.ChoiceField(choices=SEVERITY_CHOICES, default="warning")
    matchers = MatchersField(required=False, default=list)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = rule_errors(
            kind=RuleKind.THRESHOLD.value,
            metric=attrs["metric"],
            event="",
            threshold=attrs["threshold"],
            matchers=attrs["matchers"],
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class AlertSerializer(serializers.ModelSerializer):
    rule = AlertRuleBriefSerializer(read_only=True)
    acknowledged = serializers.BooleanField(
        read_only=True, help_text="Acknowledged, and the acknowledgement has not expired"
    )
    acknowledged_by = UserBriefSerializer(read_only=True, allow_null=True)
    muted = serializers.SerializerMethodField(help_text="Silenced or inhibited: it does not notify")

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "fingerprint",
            "labels",
            "annotations",
            "state",
            "value",
            "fired_value",
            "peak_value",
            "started_at",
            "fired_at",
            "resolved_at",
            "last_breach_at",
            "occurrences",
            "silenced",
            "inhibited",
            "muted",
            "acknowledged",
            "acknowledged_by",
            "acknowledged_at",
            "ack_comment",
            "ack_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_muted(self, alert: Alert) -> bool:
        return alert.silenced or alert.inhibited


def _either(attrs: dict[str, Any], at: str, seconds: str, *, required: bool) -> dt.datetime | None:
    """One moment given as a time (`at`) or as seconds from now (`seconds`), never both."""
    if at in attrs and seconds in attrs:
        raise serializers.ValidationError({seconds: [f"give {at} or {seconds}, not both"]})
    if seconds in attrs:
        return timezone.now() + dt.timedelta(seconds=attrs.pop(seconds))
    if at not in attrs and required:
        raise serializers.ValidationError({at: [f"give {at} or {seconds}"]})
    return attrs.get(at)


class AcknowledgeInput(serializers.Serializer):
    comment = serializers.CharField(required=False, default="", allow_blank=True, max_length=2000)
    expires_at = serializers.DateTimeField(
        required=False, help_text="Repeats notify again after this; default: until it resolves"
    )
    expires_in_s = serializers.IntegerField(
        required=False, min_value=1, help_text="Or: the acknowledgement lasts this many seconds"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["expires_at"] = _either(attrs, "expires_at", "expires_in_s", required=False)
        return attrs


class AlertSilenceInput(serializers.Serializer):
    ends_at = serializers.DateTimeField(required=False)
    duration_s = serializers.IntegerField(
        required=False, min_value=1, help_text="Or: lasts this many seconds"
    )
    comment = serializers.CharField(max_length=2000)
    expire_on_resolve = serializers.BooleanField(
        default=True, help_text="End the silence when this alert resolves"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["ends_at"] = _either(attrs, "ends_at", "duration_s", required=True)
        return attrs


class SilenceSerializer(serializers.ModelSerializer):
    matchers = MatcherSerializer(many=True, read_only=True)
    matchers_text = serializers.CharField(read_only=True)
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    status = serializers.CharField(read_only=True, help_text="pending, active or expired, as of now")

    class Meta:
        model = Silence
        fields = [
            "id",
            "matchers",
            "matchers_text",
            "starts_at",
            "ends_at",
            "comment",
            "status",
            "alert",
            "expire_on_resolve",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SilenceInput(serializers.Serializer):
    matchers = MatchersField(
        require_one=True,
        help_text='[{"label": "node", "op": "=~", "value": "gpu-0[12]"}] or `node=~"gpu-0[12]"`',
    )
    starts_at = serializers.DateTimeField(required=False, help_text="Defaults to now")
    ends_at = serializers.DateTimeField()
    comment = serializers.CharField()
    alert = serializers.PrimaryKeyRelatedField(
        queryset=Alert.objects.all(), required=False, allow_null=True, help_text="The alert it is made for"
    )
    expire_on_resolve = serializers.BooleanField(
        required=False, help_text="End the silence when `alert` resolves (needs `alert`)"
    )


class NotificationChannelSerializer(serializers.ModelSerializer):
    config = serializers.JSONField(
        help_text='Per kind: webhook {"url", "template", "secret", "max_alerts"}, email {"to": [...]}, '
        'alertmanager {"url"}, log {"level"}. The secret is write-only: it is never shown, a config '
        'without it keeps the one set, and "secret": "" removes it. Webhook URLs show only their host '
        "to those who may not change the channel."
    )
    secret_set = serializers.SerializerMethodField(help_text="Whether webhook bodies are signed")
    group_by = serializers.JSONField(
        required=False, help_text='Labels that split notifications into groups; ["..."]: each alert alone'
    )

    class Meta:
        model = NotificationChannel
        fields = [
            "id",
            "name",
            "kind",
            "config",
            "secret_set",
            "enabled",
            "send_resolved",
            "group_by",
            "group_wait_s",
            "group_interval_s",
            "repeat_interval_s",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_secret_set(self, channel: NotificationChannel) -> bool:
        return bool(channel.config.get(SECRET))

    def to_representation(self, instance: NotificationChannel) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["config"] = instance.shown_config(may_change=_may_change_channels(self))
        return data

    def validate_group_by(self, value: Any) -> Any:
        if errors := group_by_errors(value):
            raise serializers.ValidationError(errors)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = _current(self, attrs, "kind", None)
        if "config" in attrs and isinstance(attrs["config"], dict):
            attrs["config"] = with_kept_secret(
                attrs["config"],
                saved=self.instance.config if self.instance is not None else None,
                same_kind=self.instance is not None and kind == self.instance.kind,
            )
        config = _current(self, attrs, "config", None)
        if kind in CHANNEL_KINDS and (errors := config_errors(kind, config)):
            raise serializers.ValidationError({"config": errors})
        return attrs


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "channel",
            "status",
            "group_key",
            "firing",
            "resolved",
            "fingerprints",
            "test",
            "attempts",
            "next_attempt_at",
            "response_status",
            "error",
            "body",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "body": {"help_text": f'What was sent; "{HIDDEN}" to those who may not change the channel'}
        }

    def to_representation(self, instance: Delivery) -> dict[str, Any]:
        # A templated webhook body can carry the receiver's key (PagerDuty's routing_key).
        data = super().to_representation(instance)
        if not _may_change_channels(self):
            data["body"] = HIDDEN
        return data


class InhibitRuleSerializer(serializers.ModelSerializer):
    source_matchers = MatchersField(require_one=True, help_text='The muting alert, e.g. alertname="NodeDown"')
    target_matchers = MatchersField(require_one=True, help_text='The muted alerts, e.g. device=~".+"')
    equal = serializers.ListField(
        child=serializers.CharField(), required=False, help_text='Labels both must share, e.g. ["node"]'
    )
    source_text = serializers.SerializerMethodField()
    target_text = serializers.SerializerMethodField()

    class Meta:
        model = InhibitRule
        fields = [
            "id",
            "name",
            "source_matchers",
            "source_text",
            "target_matchers",
            "target_text",
            "equal",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_source_text(self, rule: InhibitRule) -> str:
        return format_matchers(rule.source_matchers)

    def get_target_text(self, rule: InhibitRule) -> str:
        return format_matchers(rule.target_matchers)

    def validate_equal(self, value: list[str]) -> list[str]:
        if errors := equal_errors(value):
            raise serializers.ValidationError(errors)
        return value


class AlertMetricSerializer(serializers.Serializer):
    """A metric threshold rules may watch, as on /metrics."""

    name = serializers.CharField()
    help = serializers.CharField()
    unit = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    group = serializers.CharField(help_text="Devices, Nodes, Deployments, Serving, Jobs or Releases")
    history = serializers.BooleanField(help_text="MOC keeps its history, so a rule over it can be previewed")
    values = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="With ?values=1: each label's current values",
    )


class HistoryQuery(serializers.Serializer):
    # No field default: DRF would run validate_days on it, refusing a plain GET whenever
    # MOC_ALERT_RETENTION_DAYS is under it. validate() fills it in, within the bound.
    days = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text=f"How many days back; {selectors.HISTORY_DAYS} (or MOC_ALERT_RETENTION_DAYS when less) "
        "if not given",
    )

    def validate_days(self, value: int) -> int:
        most = selectors.history_days_most()
        if value > most:
            raise serializers.ValidationError(
                f"at most {most} (MOC_ALERT_RETENTION_DAYS: older alerts are pruned)"
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("days", selectors.history_days_default())
        return attrs


class WebhookPayloadSerializer(serializers.Serializer):
    """Alertmanager's webhook body (version 4)."""

    version = serializers.CharField()
    groupKey = serializers.CharField()  # noqa: N815 - the wire format's own names
    truncatedAlerts = serializers.IntegerField()  # noqa: N815
    status = serializers.ChoiceField(choices=["firing", "resolved"])
    receiver = serializers.CharField()
    groupLabels = serializers.DictField(child=serializers.CharField())  # noqa: N815
    commonLabels = serializers.DictField(child=serializers.CharField())  # noqa: N815
    commonAnnotations = serializers.DictField(child=serializers.CharField())  # noqa: N815
    externalURL = serializers.CharField()  # noqa: N815
    alerts = serializers.ListField(child=serializers.DictField())
