from __future__ import annotations

from rest_framework import serializers

from apps.core.api.serializers import UserBriefSerializer
from apps.goals.domain.queue import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN
from apps.goals.domain.states import GOAL
from apps.goals.domain.targets import KIND_CHOICES, GoalKind
from apps.goals.models import Goal, GoalEvent


class GoalSerializer(serializers.ModelSerializer):
    owner = UserBriefSerializer(read_only=True, allow_null=True)
    allowed_transitions = serializers.SerializerMethodField(help_text="States the goal can move to next")

    class Meta:
        model = Goal
        fields = [
            "id",
            "title",
            "description",
            "kind",
            "target",
            "priority",
            "state",
            "allowed_transitions",
            "owner",
            "due_at",
            "progress",
            "outcome",
            "started_at",
            "finished_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_allowed_transitions(self, obj: Goal) -> list[str]:
        return sorted(GOAL.allowed(obj.state))


class GoalEventSerializer(serializers.ModelSerializer):
    actor = UserBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = GoalEvent
        fields = ["id", "created_at", "actor", "from_state", "to_state", "reason"]
        read_only_fields = fields


class GoalCreateInput(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=KIND_CHOICES, default=GoalKind.CUSTOM.value)
    target = serializers.JSONField(required=False, default=dict, help_text="Shape depends on the kind")
    priority = serializers.IntegerField(
        min_value=PRIORITY_MIN,
        max_value=PRIORITY_MAX,
        default=PRIORITY_DEFAULT,
        help_text="Higher goes first",
    )
    due_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class GoalUpdateInput(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True)
    kind = serializers.ChoiceField(choices=KIND_CHOICES, help_text="Changes only while a draft")
    target = serializers.JSONField()
    priority = serializers.IntegerField(min_value=PRIORITY_MIN, max_value=PRIORITY_MAX)
    due_at = serializers.DateTimeField(allow_null=True)
    progress = serializers.FloatField(min_value=0.0, max_value=1.0)


class GoalTransitionInput(serializers.Serializer):
    state = serializers.ChoiceField(choices=GOAL.choices, help_text="The state to move to")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
