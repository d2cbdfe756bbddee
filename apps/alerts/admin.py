from django.contrib import admin
from django.http import HttpRequest

from apps.alerts.models import Alert, AlertRule, NotificationChannel, Silence


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "condition", "for_seconds", "severity", "enabled", "updated_at"]
    list_filter = ["severity", "enabled", "op"]
    search_fields = ["name", "metric", "description"]
    list_editable = ["enabled"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "rule",
        "state",
        "fingerprint",
        "value",
        "started_at",
        "fired_at",
        "resolved_at",
        "acknowledged_by",
    ]
    list_filter = ["state", "rule__severity", "rule"]
    search_fields = ["fingerprint", "rule__name"]
    date_hierarchy = "started_at"
    list_select_related = ["rule", "acknowledged_by"]
    # MOC opens, fires and resolves alerts from its rules; nobody does that by hand.
    readonly_fields = [
        "rule",
        "fingerprint",
        "labels",
        "state",
        "value",
        "started_at",
        "fired_at",
        "resolved_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ["id", "matchers_text", "starts_at", "ends_at", "status", "created_by", "comment"]
    list_filter = ["created_by"]
    search_fields = ["comment", "created_by__username"]
    date_hierarchy = "starts_at"
    list_select_related = ["created_by"]


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "send_resolved", "updated_at"]
    list_filter = ["kind", "enabled", "send_resolved"]
    search_fields = ["name"]
