from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from apps.alerts.models import (
    Alert,
    AlertRule,
    Delivery,
    InhibitRule,
    NotificationChannel,
    NotificationGroup,
    Silence,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows MOC writes itself (its notifier, its rules): shown, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "condition", "for_seconds", "severity", "enabled", "updated_at"]
    list_filter = ["kind", "event", "severity", "enabled", "op"]
    search_fields = ["name", "metric", "summary", "description"]
    list_editable = ["enabled"]
    filter_horizontal = ["channels"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "severity", "enabled"]}),
        ("Threshold rules", {"fields": ["metric", "op", "threshold", "matchers"]}),
        ("Event rules", {"fields": ["event"]}),
        ("Timing", {"fields": ["for_seconds", "keep_firing_seconds"]}),
        ("Annotations and notifications", {"fields": ["summary", "description", "channels"]}),
    ]


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
        "silenced",
        "inhibited",
        "acknowledged_by",
    ]
    list_filter = ["state", "rule__severity", "silenced", "inhibited", "rule"]
    search_fields = ["fingerprint", "rule__name"]
    date_hierarchy = "started_at"
    list_select_related = ["rule", "acknowledged_by"]
    # MOC opens, fires, resolves and mutes alerts; people acknowledge them on the pages or the API,
    # which record who did and tell the live view.
    readonly_fields = [
        "rule",
        "fingerprint",
        "labels",
        "state",
        "annotations",
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
        "acknowledged_by",
        "acknowledged_at",
        "ack_comment",
        "ack_expires_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ["id", "matchers_text", "starts_at", "ends_at", "status", "created_by", "comment"]
    list_filter = ["created_by", "expire_on_resolve"]
    search_fields = ["comment", "created_by__username"]
    date_hierarchy = "starts_at"
    list_select_related = ["created_by"]
    raw_id_fields = ["alert"]

    def save_model(self, request: HttpRequest, obj: Silence, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "send_resolved", "group_by", "updated_at"]
    list_filter = ["kind", "enabled", "send_resolved"]
    search_fields = ["name"]


@admin.register(InhibitRule)
class InhibitRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "source_matchers", "target_matchers", "equal", "enabled", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    list_editable = ["enabled"]


@admin.register(NotificationGroup)
class NotificationGroupAdmin(ReadOnlyAdmin):
    list_display = ["channel", "key", "labels", "first_seen_at", "last_sent_at"]
    list_filter = ["channel"]
    search_fields = ["key", "channel__name"]
    list_select_related = ["channel"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "channel",
        "status",
        "firing",
        "resolved",
        "test",
        "attempts",
        "response_status",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "test", "channel"]
    search_fields = ["channel__name", "group_key", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["channel"]
