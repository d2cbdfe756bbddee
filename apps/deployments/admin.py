from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin import ReadOnlyInline
from apps.deployments.models import CheckResult, Deployment, Release, VerificationRun


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "state",
        "registered_model",
        "current_release",
        "replicas",
        "strategy",
        "updated_at",
    ]
    list_filter = ["state", "strategy"]
    search_fields = ["name", "description", "registered_model__name"]
    list_select_related = ["registered_model", "current_release__deployment"]
    raw_id_fields = ["registered_model", "current_release", "created_by"]
    # State moves through its actions (activate, pause, retire), so the machine is kept.
    readonly_fields = ["state", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Deployment | None = None) -> list[str]:
        # The name is part of URLs and live-update groups: set once.
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields


class VerificationRunInline(ReadOnlyInline):
    model = VerificationRun
    fields = ["state", "created_at", "started_at", "finished_at"]
    show_change_link = True


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "model_version", "strategy", "traffic_percent", "state", "created_at"]
    list_filter = ["state", "strategy"]
    search_fields = ["=id", "deployment__name", "model_version__model__name", "reason"]
    date_hierarchy = "created_at"
    list_select_related = ["deployment", "model_version__model"]
    raw_id_fields = ["deployment", "model_version", "created_by", "placements"]
    readonly_fields = ["state", "started_at", "finished_at", "created_at", "updated_at"]
    inlines = [VerificationRunInline]


class CheckResultInline(ReadOnlyInline):
    model = CheckResult
    fields = ["name", "status", "required", "duration_ms", "reason"]


@admin.register(VerificationRun)
class VerificationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "release", "state", "created_at", "started_at", "finished_at"]
    list_filter = ["state"]
    search_fields = ["=id", "release__deployment__name", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["release__deployment"]
    readonly_fields = ["release", "state", "error", "started_at", "finished_at", "created_at", "updated_at"]
    inlines = [CheckResultInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Verification runs are started by MOC for a release, never by hand.
        return False


@admin.register(CheckResult)
class CheckResultAdmin(admin.ModelAdmin):
    list_display = ["run", "name", "status", "required", "duration_ms", "reason", "checked_at"]
    list_filter = ["name", "status", "required"]
    search_fields = ["reason", "=run__id"]
    list_select_related = ["run__release__deployment"]
    readonly_fields = ["run", "name", "status", "required", "duration_ms", "reason", "evidence", "checked_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
