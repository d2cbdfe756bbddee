from __future__ import annotations

from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.fleet.models import Device, Node, TelemetrySample


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0
    fields = [
        "index",
        "kind",
        "name",
        "uuid",
        "simulated",
        "memory_total_bytes",
        "capacity_bytes",
        "health",
        "health_reason",
        "retired_at",
    ]
    readonly_fields = ["health", "health_reason", "retired_at"]
    show_change_link = True


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    """Workers register nodes; admins may repair one (labels, versions), but its state is the
    heartbeat's to change."""

    list_display = ["name", "hostname", "backend", "state", "cpu_count", "ram_bytes", "last_heartbeat_at"]
    list_filter = ["state", "backend"]
    search_fields = ["name", "hostname", "cpu_model"]
    readonly_fields = ["state", "last_heartbeat_at", "created_at", "updated_at"]
    inlines = [DeviceInline]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "name",
        "kind",
        "simulated",
        "health",
        "health_reason",
        "memory_total_bytes",
        "capacity_bytes",
        "retired_at",
    ]
    list_filter = ["health", "kind", "simulated", ("retired_at", admin.EmptyFieldListFilter), "node"]
    search_fields = ["name", "uuid", "node__name"]
    list_select_related = ["node"]
    # Health is the agent's to judge from readings, and the offline sweep's; retirement is the
    # registering worker's (what its node offers).
    readonly_fields = ["health", "health_reason", "retired_at", "created_at", "updated_at"]


@admin.register(TelemetrySample)
class TelemetrySampleAdmin(ReadOnlyAdmin):
    list_display = [
        "device",
        "at",
        "resolution_s",
        "gpu_util",
        "mem_util",
        "mem_used_bytes",
        "temperature_c",
        "power_w",
    ]
    list_filter = ["resolution_s"]
    search_fields = ["device__name", "device__uuid", "device__node__name"]
    list_select_related = ["device__node"]
    date_hierarchy = "at"
    # Counting millions of samples on every page would be the slowest part of the page.
    show_full_result_count = False
