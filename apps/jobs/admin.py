from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin import ReadOnlyInline
from apps.jobs.datasets import services as dataset_services
from apps.jobs.models import Dataset, Job, JobCheckpoint, JobEvent, JobMetric


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    fields = ["at", "level", "message"]
    ordering = ["at", "id"]


class JobCheckpointInline(ReadOnlyInline):
    model = JobCheckpoint
    fields = ["step", "reason", "size_bytes", "at", "path"]
    ordering = ["-step"]


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
    inlines = [JobCheckpointInline, JobEventInline]

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


@admin.register(JobMetric)
class JobMetricAdmin(admin.ModelAdmin):
    """A job's metric series, point by point (its page draws them; this is for looking one up)."""

    list_display = ["job", "name", "step", "value", "at"]
    list_filter = ["name"]
    search_fields = ["=job__id", "name"]
    list_select_related = ["job"]
    readonly_fields = ["job", "name", "step", "value", "at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "state",
        "format",
        "shape",
        "rows",
        "error_count",
        "size_bytes",
        "source",
        "archived",
    ]
    list_filter = ["state", "format", "shape", "source", "archived"]
    search_fields = ["name", "description", "path", "sha256"]
    raw_id_fields = ["created_by"]
    # What the file holds is found by validation, not typed in. The name follows the rule uploads
    # and scans keep (apps.jobs.domain.datasets.name_problem), which a free-text edit here would not.
    readonly_fields = [
        "name",
        "root",
        "path",
        "format",
        "shape",
        "source",
        "size_bytes",
        "sha256",
        "fingerprint",
        "rows",
        "state",
        "errors",
        "error_count",
        "validated_at",
        "created_at",
        "updated_at",
    ]
    actions = ["validate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Datasets come from the roots (a scan) or an upload, which writes the file first.
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Dataset | None = None) -> list[str]:
        # Once a job used the dataset its split stays (dataset_services.dataset_update refuses too).
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and dataset_services.split_frozen(obj):
            fields += dataset_services.SPLIT_FIELDS
        return fields

    @admin.action(description="Validate the selected datasets again")
    def validate(self, request: HttpRequest, queryset: QuerySet[Dataset]) -> None:
        for dataset in queryset:
            dataset_services.dataset_validate_request(dataset=dataset)
        self.message_user(request, f"{queryset.count()} dataset(s) validated or queued for validation.")
