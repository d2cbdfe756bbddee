from __future__ import annotations

from typing import Any

from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.alerts import delivering, evaluating, previewing, reports, selectors, services, sources
from apps.alerts.api import serializers as s
from apps.alerts.domain.catalog import CATALOG, MetricSpec, spec_dict
from apps.alerts.filters import AlertFilter, AlertRuleFilter, NotificationChannelFilter, SilenceFilter
from apps.alerts.models import AlertRule, Silence
from apps.core.api.commands import ServiceWriteMixin
from apps.serving.api.serializers import ErrorBody

_PREVIEW = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="What the rule would have fired over the last day of stored samples: the series "
    "({labels, points: [[time, value]]}), the alerts it would have raised, and `reason` when MOC "
    "keeps no history of the metric.",
)
_HISTORY = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="{days, since, until, dates, fired, firing_s, rules: [{id, name, severity, url, fired, "
    "per_day, firing_s, median_firing_s, last_fired_at}]}, most fired first",
)

_REFUSALS = {
    400: OpenApiResponse(ErrorBody, description="Bad input: `fields` names each field and what is wrong"),
    403: OpenApiResponse(ErrorBody, description="Your role may not do this"),
    409: OpenApiResponse(ErrorBody, description="Its state forbids it now (`detail` says why)"),
}


def _refusals(*codes: int) -> dict[int, OpenApiResponse]:
    """The error answers an action documents besides its success (MOC's one error body)."""
    return {code: _REFUSALS[code] for code in codes}


def _crud(noun: str, output: type[serializers.Serializer]) -> dict[str, Any]:
    article = "an" if noun[0] in "aeiou" else "a"
    return {
        "list": extend_schema(summary=f"List {noun}s"),
        "retrieve": extend_schema(summary=f"One {noun}"),
        "create": extend_schema(
            summary=f"Create {article} {noun}", responses={201: output, **_refusals(400, 403)}
        ),
        "update": extend_schema(
            summary=f"Replace {article} {noun}", responses={200: output, **_refusals(400, 403)}
        ),
        "partial_update": extend_schema(
            summary=f"Change some fields of {article} {noun}", responses={200: output, **_refusals(400, 403)}
        ),
        "destroy": extend_schema(summary=f"Delete {article} {noun}", responses={204: None, **_refusals(403)}),
    }


@extend_schema_view(**_crud("alert rule", s.AlertRuleSerializer))
class AlertRuleViewSet(viewsets.ModelViewSet):
    """Threshold rules over the catalogue's metrics, and event rules. Admins configure them;
    everyone reads and previews them."""

    queryset = selectors.alert_rule_list().prefetch_related("channels")
    serializer_class = s.AlertRuleSerializer
    filterset_class = AlertRuleFilter
    search_fields = ["name", "metric", "description"]
    ordering_fields = ["name", "severity", "metric", "updated_at"]
    # A preview writes nothing.
    action_verbs = {"preview": "view", "preview_saved": "view"}

    @extend_schema(
        request=s.RulePreviewInput,
        responses={200: _PREVIEW, **_refusals(400)},
        summary="What an unsaved threshold rule would have fired over the last day",
    )
    @action(detail=False, methods=["post"], filter_backends=[])
    def preview(self, request: Request) -> Response:
        data = s.RulePreviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        return self._preview(AlertRule(pk=0, **data.validated_data))

    @extend_schema(
        request=None,
        responses={200: _PREVIEW, **_refusals(400)},
        summary="What this threshold rule would have fired over the last day",
    )
    @action(detail=True, methods=["get"], url_path="preview", filter_backends=[])
    def preview_saved(self, request: Request, pk: str | None = None) -> Response:
        rule: AlertRule = self.get_object()
        if rule.is_event:
            raise ValidationError({"kind": ["only threshold rules can be previewed"]})
        if rule.threshold is None:
            raise ValidationError({"threshold": ["is required for threshold rules"]})
        return self._preview(rule)

    def _preview(self, rule: AlertRule) -> Response:
        spec = evaluating.rule_spec(rule)
        return Response(previewing.preview(rule=spec, metric=rule.metric, now=timezone.now()))


def _metric(spec: MetricSpec, values: bool) -> dict[str, Any]:
    row = spec_dict(spec)
    if values:
        row["values"] = sources.label_values(spec.name)
    return row


_VALUES = OpenApiParameter(
    "values", OpenApiTypes.BOOL, description="Also each label's current values (reads the live figures)"
)


class AlertMetricViewSet(viewsets.ViewSet):
    """The metrics a threshold rule may watch, named as on /metrics, with their labels."""

    lookup_value_regex = r"[a-zA-Z_:][a-zA-Z0-9_:]*"

    @extend_schema(
        parameters=[_VALUES], responses=s.AlertMetricSerializer(many=True), summary="The metric catalogue"
    )
    def list(self, request: Request) -> Response:
        values = request.query_params.get("values") in {"1", "true"}
        return Response([_metric(spec, values) for spec in CATALOG.values()])

    @extend_schema(responses=s.AlertMetricSerializer, summary="One metric, with its labels' current values")
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        spec = CATALOG.get(pk or "")
        if spec is None:
            raise Http404
        return Response(_metric(spec, True))


@extend_schema_view(
    list=extend_schema(summary="Alerts: firing first, then pending, then resolved"),
    retrieve=extend_schema(summary="One alert"),
)
class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts raised by the rules, firing first. Operators acknowledge and silence them."""

    queryset = selectors.alert_list()
    serializer_class = s.AlertSerializer
    filterset_class = AlertFilter
    search_fields = ["rule__name", "fingerprint"]
    ordering_fields = ["started_at", "fired_at", "resolved_at", "state"]
    action_verbs = {"acknowledge": "change", "unacknowledge": "change", "silence": "change"}

    def _answer(self, alert: Any) -> Response:
        return Response(s.AlertSerializer(self.get_queryset().get(pk=alert.pk)).data)

    @extend_schema(
        request=s.AcknowledgeInput,
        responses={200: s.AlertSerializer, **_refusals(400, 403, 409)},
        summary="Say you are handling it: repeats are muted until it resolves or the acknowledgement expires",
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        data = s.AcknowledgeInput(data=request.data)
        data.is_valid(raise_exception=True)
        alert = services.alert_acknowledge(alert=self.get_object(), user=request.user, **data.validated_data)
        return self._answer(alert)

    @extend_schema(
        request=None,
        responses={200: s.AlertSerializer, **_refusals(403, 409)},
        summary="Take back the acknowledgement",
    )
    @action(detail=True, methods=["post"])
    def unacknowledge(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(services.alert_unacknowledge(alert=self.get_object(), user=request.user))

    @extend_schema(
        request=s.AlertSilenceInput,
        responses={201: s.SilenceSerializer, **_refusals(400, 403)},
        summary="Silence this alert's label set (severity aside), by default until it resolves",
    )
    @action(detail=True, methods=["post"])
    def silence(self, request: Request, pk: str | None = None) -> Response:
        data = s.AlertSilenceInput(data=request.data)
        data.is_valid(raise_exception=True)
        silence = services.silence_from_alert(
            alert=self.get_object(), user=request.user, **data.validated_data
        )
        return Response(s.SilenceSerializer(silence).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[s.HistoryQuery],
        responses={200: _HISTORY, **_refusals(400)},
        summary="What fired over the last days: per rule, how often and how long, per day",
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def history(self, request: Request) -> Response:
        query = s.HistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(reports.history_summary(days=query.validated_data["days"], now=timezone.now()))


@extend_schema_view(
    list=extend_schema(summary="Silences: those in force first"),
    retrieve=extend_schema(summary="One silence"),
    update=extend_schema(
        summary="Replace a silence that has not expired",
        responses={200: s.SilenceSerializer, **_refusals(400, 403, 409)},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a silence that has not expired",
        responses={200: s.SilenceSerializer, **_refusals(400, 403, 409)},
    ),
)
class SilenceViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
    """Silences mute notifications for matching alerts for a while. Expire one instead of deleting it."""

    queryset = selectors.silence_list()
    serializer_class = s.SilenceSerializer
    create_input = update_input = s.SilenceInput
    create_summary = "Silence alerts whose labels match, from now (or starts_at) to ends_at"
    create_refusals = _refusals(400, 403)
    filterset_class = SilenceFilter
    search_fields = ["comment"]
    ordering_fields = ["starts_at", "ends_at", "created_at"]
    action_verbs = {"expire": "change"}

    def create_with(self, data: dict[str, Any]) -> Silence:
        return services.silence_create(created_by=self.request.user, **data)

    def update_with(self, obj: Silence, data: dict[str, Any]) -> Silence:
        return services.silence_update(silence=obj, **data)

    @extend_schema(
        request=None,
        responses={200: s.SilenceSerializer, **_refusals(403, 409)},
        summary="End the silence now",
    )
    @action(detail=True, methods=["post"])
    def expire(self, request: Request, pk: str | None = None) -> Response:
        silence = services.silence_expire(silence=self.get_object())
        return Response(s.SilenceSerializer(silence).data)


@extend_schema_view(**_crud("notification channel", s.NotificationChannelSerializer))
class NotificationChannelViewSet(viewsets.ModelViewSet):
    """Where alert notifications go. Admins configure them; the config is checked per kind and its
    signing secret is never shown."""

    queryset = selectors.notification_channel_list()
    serializer_class = s.NotificationChannelSerializer
    filterset_class = NotificationChannelFilter
    search_fields = ["name"]
    ordering_fields = ["name", "kind", "updated_at"]

    @extend_schema(
        responses=s.WebhookPayloadSerializer,
        summary="The firing, unsilenced alerts this channel would be told about now, as an Alertmanager "
        "webhook (version 4) payload, whatever the channel's kind or template",
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        return Response(selectors.webhook_preview(channel=self.get_object(), now=timezone.now()))

    @extend_schema(responses=s.DeliverySerializer(many=True), summary="Its notifications, latest first")
    @action(detail=True, methods=["get"], filter_backends=[], serializer_class=s.DeliverySerializer)
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        page = self.paginate_queryset(selectors.delivery_list().filter(channel=self.get_object()))
        context = self.get_serializer_context()
        return self.get_paginated_response(s.DeliverySerializer(page, many=True, context=context).data)

    @extend_schema(
        request=None,
        responses={201: s.DeliverySerializer, **_refusals(403)},
        summary="Send a test notification now; the delivery says what came back",
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        delivery = delivering.channel_test(channel=self.get_object(), user=request.user)
        data = s.DeliverySerializer(delivery, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED)


@extend_schema_view(**_crud("inhibit rule", s.InhibitRuleSerializer))
class InhibitRuleViewSet(viewsets.ModelViewSet):
    """While an alert matching the source fires, alerts matching the target that share the `equal`
    labels are muted (a node that is down mutes its devices). Admins configure them."""

    queryset = selectors.inhibit_rule_list()
    serializer_class = s.InhibitRuleSerializer
    search_fields = ["name"]
    ordering_fields = ["name", "updated_at"]
