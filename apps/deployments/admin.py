from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin import ReadOnlyInline
from apps.deployments.models import (
    ANALYSIS_FIELDS,
    BULKHEAD_FIELDS,
    ON_DEMAND_FIELDS,
    PLACEMENT_FIELDS,
    ROLLBACK_WINDOW_FIELDS,
    SLO_FIELDS,
    VERIFICATION_FIELDS,
    CheckResult,
    Deployment,
    KeyGrant,
    Release,
    ReleaseEvent,
    VerificationRun,
)
from apps.deployments.rollout import replicas


class KeyGrantInline(admin.TabularInline):
    """The API keys limited to this deployment (a key with no grant may call every deployment)."""

    model = KeyGrant
    extra = 0
    fields = ["key", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["key"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "environment",
        "state",
        "registered_model",
        "current_release",
        "replicas",
        "pinned",
        "strategy",
        "owner",
        "updated_at",
    ]
    list_filter = ["state", "environment", "strategy", "pinned"]
    search_fields = ["name", "description", "registered_model__name"]
    list_select_related = ["registered_model", "current_release__deployment", "owner"]
    inlines = [KeyGrantInline]
    raw_id_fields = ["registered_model", "created_by", "owner", "device"]
    # State moves through its actions (activate, pause, retire), so the machine is kept; the
    # current release only by the rollout engine and the release actions, which write the timeline.
    readonly_fields = ["state", "current_release", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "environment", "state", "registered_model", "owner"]}),
        ("Serving", {"fields": ["current_release", *PLACEMENT_FIELDS]}),
        ("On demand", {"fields": ON_DEMAND_FIELDS}),
        ("Bulkhead", {"fields": BULKHEAD_FIELDS}),
        ("Service-level objectives", {"fields": SLO_FIELDS}),
        ("Canary analysis", {"fields": ANALYSIS_FIELDS}),
        ("Rollback windows", {"fields": ROLLBACK_WINDOW_FIELDS}),
        ("Verification", {"fields": VERIFICATION_FIELDS}),
        ("Record", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Deployment | None = None) -> list[str]:
        # The name is part of URLs and live-update groups: set once. The model changes only through
        # the API or the settings page, which refuse it while a release is live or in progress.
        return (
            [*self.readonly_fields, "name", "registered_model"] if obj is not None else self.readonly_fields
        )

    def save_model(self, request: HttpRequest, obj: Deployment, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and {"pinned", "keep_alive_s"} & set(form.changed_data):
            replicas.settle(obj)  # at once, as services.deployment_update does


@admin.register(KeyGrant)
class KeyGrantAdmin(admin.ModelAdmin):
    list_display = ["deployment", "key", "created_at"]
    list_filter = ["deployment"]
    search_fields = ["deployment__name", "key__name", "key__prefix"]
    list_select_related = ["deployment", "key"]
    autocomplete_fields = ["deployment", "key"]
    readonly_fields = ["created_at"]


class VerificationRunInline(ReadOnlyInline):
    model = VerificationRun
    fields = ["state", "created_at", "started_at", "finished_at"]
    show_change_link = True


class ReleaseEventInline(ReadOnlyInline):
    model = ReleaseEvent
    fields = ["at", "kind", "from_state", "to_state", "traffic_percent", "cause", "actor", "message"]


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "model_version", "strategy", "traffic_percent", "state", "created_at"]
    list_filter = ["state", "strategy"]
    search_fields = ["=id", "deployment__name", "model_version__model__name", "reason"]
    date_hierarchy = "created_at"
    list_select_related = ["deployment", "model_version__model"]
    # A release is made, moved and ended only by the rollout engine and the release actions (API
    # and pages), which hold the staging gate, the one-open-release rule and the timeline: here
    # it is shown, never added, edited or deleted.
    readonly_fields = [
        "deployment",
        "model_version",
        "strategy",
        "steps",
        "reason",
        "placements",
        "created_by",
        "state",
        "step_index",
        "step_started_at",
        "traffic_percent",
        "resume_to",
        "previous_release",
        "gate_overridden_by",
        "previous_kept_until",
        "promoted_at",
        "analysis_baseline",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    ]
    inlines = [ReleaseEventInline, VerificationRunInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Release | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Release | None = None) -> bool:
        return False


@admin.register(ReleaseEvent)
class ReleaseEventAdmin(admin.ModelAdmin):
    list_display = ["at", "release", "kind", "from_state", "to_state", "traffic_percent", "cause", "actor"]
    list_filter = ["kind", "cause"]
    search_fields = ["message", "=release__id", "release__deployment__name"]
    date_hierarchy = "at"
    list_select_related = ["release__deployment", "actor"]

    # The timeline is MOC's record of what happened: read only, for everyone.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ReleaseEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ReleaseEvent | None = None) -> bool:
        return False


class CheckResultInline(ReadOnlyInline):
    model = CheckResult
    fields = ["name", "status", "required", "duration_ms", "reason", "evidence"]


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
