from django.contrib import admin

from apps.core.admin import ReadOnlyInline
from apps.goals.models import Goal, GoalEvent


class GoalEventInline(ReadOnlyInline):
    model = GoalEvent
    fields = ["created_at", "from_state", "to_state", "actor", "reason"]


@admin.register(Goal)
class GoalAdmin(admin.ModelAdmin):
    list_display = ["title", "kind", "state", "priority", "owner", "due_at", "progress", "created_at"]
    list_filter = ["state", "kind"]
    search_fields = ["title", "description", "owner__username"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["owner"]
    # State moves go through goal_transition (history, audit); the admin shows them.
    readonly_fields = ["state", "started_at", "finished_at", "created_at", "updated_at"]
    inlines = [GoalEventInline]
