import django_filters

from apps.core.models import AuditEvent, TaskDelivery


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor__username")
    object_type = django_filters.CharFilter(field_name="content_type__model")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "source", "actor", "object_type", "object_id", "api_key_prefix"]


class TaskDeliveryFilter(django_filters.FilterSet):
    class Meta:
        model = TaskDelivery
        fields = ["state", "task_name", "queue"]
