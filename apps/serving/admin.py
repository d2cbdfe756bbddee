"""Serving in the admin: placements (repair only), serving profiles (where operators configure how a
version is served, and admins allow pickles) and inference records (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin import ReadOnlyAdmin
from apps.serving.models import InferenceRecord, Placement, ServingProfile


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "state",
        "reserved_bytes",
        "measured_bytes",
        "pinned",
        "use_count",
        "last_used_at",
        "error_class",
    ]
    list_filter = ["state", "pinned", "error_class"]
    search_fields = ["version__model__name", "device__name", "device__uuid", "device__node__name"]
    list_select_related = ["version__model", "device__node"]
    raw_id_fields = ["version", "device", "depends_on", "displaced_by", "requested_by"]
    # The state moves only through the placement machine (apps.serving.services.placement_move);
    # the rest is what the scheduler and the worker recorded.
    readonly_fields = [
        "state",
        "loaded_at",
        "ended_at",
        "error_class",
        "end_reason",
        "load_seconds",
        "priority",
        "depends_on",
        "displaced_by",
        "created_at",
        "updated_at",
    ]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Placements are the history of what ran where; they end, they are not deleted.
        return False


@admin.register(ServingProfile)
class ServingProfileAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "max_concurrency",
        "max_queue",
        "request_timeout_s",
        "breaker_failures",
        "keep_alive_s",
        "pinned",
        "preload",
        "allow_pickle",
    ]
    list_filter = ["preload", "pinned", "allow_pickle"]
    search_fields = ["version__model__name"]
    list_select_related = ["version__model"]
    raw_id_fields = ["version"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(InferenceRecord)
class InferenceRecordAdmin(ReadOnlyAdmin):
    list_display = ["at", "version", "placement", "task", "outcome", "error_class", "queue_ms", "compute_ms"]
    list_filter = ["task", "outcome", "error_class"]
    search_fields = ["version__model__name"]
    list_select_related = ["version__model", "placement"]
    date_hierarchy = "at"
    show_full_result_count = False
