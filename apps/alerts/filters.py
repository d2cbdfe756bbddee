from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.alerts import selectors
from apps.alerts.domain.matchers import SilenceStatus
from apps.alerts.domain.states import ALERT
from apps.alerts.models import (
    CHANNEL_KIND_CHOICES,
    SEVERITY_CHOICES,
    Alert,
    AlertRule,
    NotificationChannel,
    Silence,
)
from apps.core.filters import FilterSet


class AlertFilter(FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=ALERT.choices)
    severity = django_filters.ChoiceFilter(
        field_name="rule__severity", choices=SEVERITY_CHOICES, label="Severity"
    )
    rule = django_filters.CharFilter(field_name="rule__name", label="Rule")
    acknowledged = django_filters.BooleanFilter(method="filter_acknowledged", label="Acknowledged")
    muted = django_filters.BooleanFilter(method="filter_muted", label="Silenced or inhibited")
    since = django_filters.IsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte", label="Started since"
    )

    class Meta:
        model = Alert
        fields = ["state", "severity", "rule", "acknowledged", "muted", "fingerprint"]

    def filter_acknowledged(self, queryset: QuerySet[Alert], name: str, value: bool) -> QuerySet[Alert]:
        # An acknowledgement that expired no longer counts (Alert.acknowledged).
        current = selectors.acknowledged_q(timezone.now())
        return queryset.filter(current) if value else queryset.exclude(current)

    def filter_muted(self, queryset: QuerySet[Alert], name: str, value: bool) -> QuerySet[Alert]:
        muted = Q(silenced=True) | Q(inhibited=True)
        return queryset.filter(muted) if value else queryset.exclude(muted)


class AlertRuleFilter(FilterSet):
    class Meta:
        model = AlertRule
        fields = ["kind", "event", "severity", "enabled", "metric"]


class SilenceFilter(FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(s.value, s.value.capitalize()) for s in SilenceStatus],
        method="filter_status",
        label="Status",
    )
    created_by = django_filters.CharFilter(field_name="created_by__username", label="Created by")

    class Meta:
        model = Silence
        fields = ["status", "created_by"]

    def filter_status(self, queryset: QuerySet[Silence], name: str, value: str) -> QuerySet[Silence]:
        now = timezone.now()
        if value == SilenceStatus.EXPIRED:
            return queryset.filter(ends_at__lte=now)
        if value == SilenceStatus.PENDING:
            return queryset.filter(starts_at__gt=now, ends_at__gt=now)
        return queryset.filter(starts_at__lte=now, ends_at__gt=now)


class NotificationChannelFilter(FilterSet):
    kind = django_filters.ChoiceFilter(choices=CHANNEL_KIND_CHOICES)

    class Meta:
        model = NotificationChannel
        fields = ["kind", "enabled", "send_resolved"]
