from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.alerts import selectors, services
from apps.alerts.api import serializers as s
from apps.alerts.filters import AlertFilter, AlertRuleFilter, NotificationChannelFilter, SilenceFilter
from apps.alerts.models import Silence
from apps.core.api.commands import ServiceWriteMixin


class AlertRuleViewSet(viewsets.ModelViewSet):
    """Threshold rules over metrics. Admins configure them; everyone reads them."""

    queryset = selectors.alert_rule_list()
    serializer_class = s.AlertRuleSerializer
    filterset_class = AlertRuleFilter
    search_fields = ["name", "metric", "description"]
    ordering_fields = ["name", "severity", "metric", "updated_at"]


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts raised by the rules, firing first. Operators acknowledge them."""

    queryset = selectors.alert_list()
    serializer_class = s.AlertSerializer
    filterset_class = AlertFilter
    search_fields = ["rule__name", "fingerprint"]
    ordering_fields = ["started_at", "fired_at", "resolved_at", "state"]
    action_verbs = {"acknowledge": "change"}

    @extend_schema(
        request=None, responses=s.AlertSerializer, summary="Say that someone is handling the alert"
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        alert = services.alert_acknowledge(alert=self.get_object(), user=request.user)
        return Response(s.AlertSerializer(alert).data)


class SilenceViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
    """Silences mute notifications for matching alerts for a while. Expire one instead of deleting it."""

    queryset = selectors.silence_list()
    serializer_class = s.SilenceSerializer
    create_input = update_input = s.SilenceInput
    filterset_class = SilenceFilter
    search_fields = ["comment"]
    ordering_fields = ["starts_at", "ends_at", "created_at"]
    action_verbs = {"expire": "change"}

    def create_with(self, data: dict[str, Any]) -> Silence:
        return services.silence_create(created_by=self.request.user, **data)

    def update_with(self, obj: Silence, data: dict[str, Any]) -> Silence:
        return services.silence_update(silence=obj, **data)

    @extend_schema(request=None, responses=s.SilenceSerializer, summary="End the silence now")
    @action(detail=True, methods=["post"])
    def expire(self, request: Request, pk: str | None = None) -> Response:
        silence = services.silence_expire(silence=self.get_object())
        return Response(s.SilenceSerializer(silence).data)


class NotificationChannelViewSet(viewsets.ModelViewSet):
    """Where alert notifications go. Admins configure them; the config is checked per kind."""

    queryset = selectors.notification_channel_list()
    serializer_class = s.NotificationChannelSerializer
    filterset_class = NotificationChannelFilter
    search_fields = ["name"]
    ordering_fields = ["name", "kind", "updated_at"]

    @extend_schema(
        responses=s.WebhookPayloadSerializer,
        summary="The Alertmanager-format payload this channel would get now for firing, unsilenced alerts",
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        return Response(selectors.webhook_preview(channel=self.get_object(), now=timezone.now()))
