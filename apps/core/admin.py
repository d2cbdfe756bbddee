from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey as LibraryAPIKey

from apps.core.models import ApiKey, AuditEvent, OutboxMessage, TaskDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    """For tables MOC writes itself: operators inspect them, nobody edits them by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """A parent's history or parts (events, runs, files), shown under it: MOC writes the rows, so
    every field listed in `fields` is read-only and none is added or deleted by hand."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return list(self.fields or [])

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = [*APIKeyModelAdmin.list_display, "owner", "role", "limited", "last_used_at"]
    list_filter = [*APIKeyModelAdmin.list_filter, "role", "limited"]
    search_fields = [*APIKeyModelAdmin.search_fields, "owner__username"]
    autocomplete_fields = ["owner"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "actor_label",
        "action",
        "content_type",
        "object_repr",
        "source",
        "remote_addr",
    ]
    list_filter = ["source", "action", "content_type"]
    search_fields = ["actor_label", "object_repr", "action", "api_key_prefix"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(TaskDelivery)
class TaskDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["task_name", "task_id", "queue", "state", "deliveries", "worker", "last_delivered_at"]
    list_filter = ["state", "queue", "task_name"]
    search_fields = ["task_id", "task_name", "worker"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    """Task messages decided but not yet taken by the broker: while it is down, what waits, since
    when, and why the last send failed. The default workers send them once it is back."""

    list_display = [
        "created_at",
        "task_name",
        "task_id",
        "attempts",
        "last_attempt_at",
        "last_error",
        "failed_at",
        "expires_at",
    ]
    list_filter = ["task_name"]
    search_fields = ["task_id", "task_name"]


# The library registers its own concrete key table, which MOC does not use.
if admin.site.is_registered(LibraryAPIKey):
    admin.site.unregister(LibraryAPIKey)
