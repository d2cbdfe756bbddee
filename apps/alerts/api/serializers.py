from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.alerts.domain.channels import config_errors, redact_config
from apps.alerts.domain.matchers import MatchOp, matcher_errors
from apps.alerts.domain.rules import METRIC_NAME, METRIC_NAME_HELP
from apps.alerts.models import CHANNEL_KINDS, Alert, AlertRule, NotificationChannel, Silence
from apps.core.api.permissions import request_has_perm
from apps.core.api.serializers import UserBriefSerializer


class AlertRuleBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertRule
        fields = ["id", "name", "severity"]


class MatcherSerializer(serializers.Serializer):
    """One label matcher, as in Alertmanager (documents the shape; lists are validated whole)."""

    label = serializers.CharField()
    op = serializers.ChoiceField(choices=[(o.value, o.value) for o in MatchOp])
    value = serializers.CharField(allow_blank=True)


class AlertRuleSerializer(serializers.ModelSerializer):
    matchers = serializers.JSONField(
        required=False, help_text='Series the rule watches: [{"label", "op", "value"}]; empty watches all'
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
            "description",
            "metric",
            "op",
            "threshold",
            "for_seconds",
            "severity",
            "matchers",
            "enabled",
            "open_alerts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "open_alerts", "created_at", "updated_at"]

    def validate_metric(self, value: str) -> str:
        if not METRIC_NAME.fullmatch(value):
            raise serializers.ValidationError(METRIC_NAME_HELP)
        return value

    def validate_matchers(self, value: Any) -> Any:
        if errors := matcher_errors(value, require_one=False):
            raise serializers.ValidationError(errors)
        return value


class AlertSerializer(serializers.ModelSerializer):
    rule = AlertRuleBriefSerializer(read_only=True)
    acknowledged_by = UserBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "fingerprint",
            "labels",
            "state",
            "value",
            "started_at",
            "fired_at",
            "resolved_at",
            "acknowledged_by",
            "acknowledged_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SilenceSerializer(serializers.ModelSerializer):
    matchers = MatcherSerializer(many=True, read_only=True)
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    status = serializers.CharField(read_only=True, help_text="pending, active or expired, as of now")

    class Meta:
        model = Silence
        fields = [
            "id",
            "matchers",
            "starts_at",
            "ends_at",
            "comment",
            "status",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SilenceInput(serializers.Serializer):
    matchers = serializers.JSONField(help_text='[{"label": "node", "op": "=~", "value": "gpu-0[12]"}]')
    starts_at = serializers.DateTimeField(required=False, help_text="Defaults to now")
    ends_at = serializers.DateTimeField()
    comment = serializers.CharField()


class NotificationChannelSerializer(serializers.ModelSerializer):
    config = serializers.JSONField(
        help_text='Per kind: webhook {"url"}, email {"to": [...]}, log {"level"}; '
        "webhook URLs show only their host to those who may not change the channel"
    )

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "config", "enabled", "send_resolved", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def to_representation(self, instance: NotificationChannel) -> dict[str, Any]:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is None or not request_has_perm(request, "alerts.change_notificationchannel"):
            data["config"] = redact_config(instance.kind, instance.config)
        return data

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        config = attrs.get("config", getattr(self.instance, "config", None))
        if kind in CHANNEL_KINDS and (errors := config_errors(kind, config)):
            raise serializers.ValidationError({"config": errors})
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
