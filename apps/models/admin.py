from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin import ReadOnlyInline
from apps.models import services
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel, ScanRun


class ModelFileInline(ReadOnlyInline):
    model = ModelFile
    fields = ["path", "format", "size_bytes", "sha256", "mtime"]
    show_change_link = True


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "archived", "created_at", "updated_at"]
    list_filter = ["archived"]
    search_fields = ["name", "description", "tags"]
    readonly_fields = ["archived", "archived_at", "created_at", "updated_at"]
    autocomplete_fields = ["owner"]
    date_hierarchy = "created_at"
    actions = ["archive", "restore"]

    @admin.action(description="Archive selected models", permissions=["change"])
    def archive(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> None:
        for model in queryset:
            services.model_archive(model=model)
        self.message_user(request, f"Archived {queryset.count()} model(s).", messages.SUCCESS)

    @admin.action(description="Restore selected models from the archive", permissions=["change"])
    def restore(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> None:
        for model in queryset:
            services.model_restore(model=model)
        self.message_user(request, f"Restored {queryset.count()} model(s).", messages.SUCCESS)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "format",
        "validation_state",
        "size_bytes",
        "params_count",
        "archived",
        "created_at",
    ]
    list_filter = ["validation_state", "format", "kind", "archived"]
    search_fields = ["model__name", "path", "sha256"]
    list_select_related = ["model"]
    # Validation is the validator's to change, through its state machine; what the scan
    # derived from the files (report, VRAM estimate) is recomputed from them, never typed in;
    # lineage, evaluations and the benchmark baseline are what jobs recorded of the version.
    readonly_fields = [
        "validation_state",
        "validation_error",
        "validation_report",
        "validated_at",
        "vram_estimate",
        "estimated_vram_bytes",
        "lineage",
        "evaluations",
        "benchmark",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["model", "parent", "created_by"]
    date_hierarchy = "created_at"
    inlines = [ModelFileInline]


@admin.register(ModelFile)
class ModelFileAdmin(admin.ModelAdmin):
    list_display = ["path", "version", "format", "size_bytes", "mtime"]
    list_filter = ["format"]
    search_fields = ["path", "sha256", "version__model__name"]
    list_select_related = ["version__model"]
    raw_id_fields = ["version"]


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["__str__", "model", "name", "version", "updated_at"]
    list_filter = ["name"]
    search_fields = ["name", "model__name"]
    list_select_related = ["model", "version__model"]
    raw_id_fields = ["model", "version"]


@admin.register(ScanRun)
class ScanRunAdmin(admin.ModelAdmin):
    """Scans are started from the API or the pages and written by the worker: read-only here."""

    list_display = ["__str__", "state", "requested_by", "new", "changed", "unchanged", "removed", "failed"]
    list_filter = ["state"]
    list_select_related = ["requested_by"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ScanRun | None = None) -> bool:
        return False
