import django_filters

from apps.core.filters import FilterSet
from apps.goals.domain.states import GOAL
from apps.goals.domain.targets import KIND_CHOICES
from apps.goals.models import Goal


class GoalFilter(FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=GOAL.choices)
    kind = django_filters.ChoiceFilter(choices=KIND_CHOICES)
    owner = django_filters.CharFilter(field_name="owner__username", label="Owner")
    min_priority = django_filters.NumberFilter(
        field_name="priority", lookup_expr="gte", label="Priority at least"
    )
    due_before = django_filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="lt", label="Due before")

    class Meta:
        model = Goal
        fields = ["state", "kind", "owner", "min_priority", "due_before"]
