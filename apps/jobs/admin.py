from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin import ReadOnlyInline
from apps.jobs.models import Job, JobEvent


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    fields = ["at", "level", "message"]
    ordering = ["at", "id"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "state",
        "queue",
        "priority",
        "progress",
        "attempts",
        "error_class",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "kind", "queue", "error_class"]
    search_fields = ["=id", "message", "error", "worker", "task_id"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by"]
    raw_id_fields = ["model_version", "device", "created_by"]
    # The workers and the reconciler own a job's run; admins may still fix priority or limits.
    readonly_fields = [
        "kind",
        "state",
        "params",
        "attempts",
        "progress",
        "message",
        "error_class",
        "error",
        "result",
        "dispatched_at",
        "started_at",
        "finished_at",
        "worker",
        "task_id",
        "created_at",
        "updated_at",
    ]
    inlines = [JobEventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Jobs are created through the pages and the API, which validate and dispatch them.
        return False


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ["at", "job", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message", "=job__id"]
    date_hierarchy = "at"
    list_select_related = ["job"]
    readonly_fields = ["job", "at", "level", "message", "data"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
