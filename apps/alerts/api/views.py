from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.alerts import selectors, services
from apps.alerts.api import serializers as s
from apps.alerts.filters import AlertFilter, AlertRuleFilter, NotificationChannelFilter, SilenceFilter


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


class SilenceViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Silences mute notifications for matching alerts for a while. Expire one instead of deleting it."""

    queryset = selectors.silence_list()
    serializer_class = s.SilenceSerializer
    filterset_class = SilenceFilter
    search_fields = ["comment"]
    ordering_fields = ["starts_at", "ends_at", "created_at"]
    action_verbs = {"expire": "change"}

    @extend_schema(request=s.SilenceInput, responses={201: s.SilenceSerializer})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        data = s.SilenceInput(data=request.data)
        data.is_valid(raise_exception=True)
        silence = services.silence_create(created_by=request.user, **data.validated_data)
        return Response(s.SilenceSerializer(silence).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.SilenceInput, responses=s.SilenceSerializer)
    def update(self, request: Request, *args: object, partial: bool = False, **kwargs: object) -> Response:
        data = s.SilenceInput(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        silence = services.silence_update(silence=self.get_object(), **data.validated_data)
        return Response(s.SilenceSerializer(silence).data)

    @extend_schema(request=s.SilenceInput, responses=s.SilenceSerializer)
    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

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
