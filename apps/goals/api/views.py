from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceWriteMixin
from apps.goals import selectors, services
from apps.goals.api import serializers as s
from apps.goals.filters import GoalFilter
from apps.goals.models import Goal


class GoalViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
    """Operators' objectives. Goals are never deleted: abandon one through `transition`."""

    queryset = selectors.goal_list()
    serializer_class = s.GoalSerializer
    create_input = s.GoalCreateInput
    update_input = s.GoalUpdateInput
    filterset_class = GoalFilter
    search_fields = ["title", "description"]
    ordering_fields = ["priority", "due_at", "created_at", "updated_at", "title"]
    action_verbs = {"transition": "change"}

    def create_with(self, data: dict[str, Any]) -> Goal:
        return services.goal_create(owner=self.request.user, **data)

    def update_with(self, obj: Goal, data: dict[str, Any]) -> Goal:
        return services.goal_update(goal=obj, **data)

    @extend_schema(
        request=s.GoalTransitionInput,
        responses=s.GoalSerializer,
        summary="Move a goal to another state (activate, pause, resume, achieve, fail, abandon)",
    )
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str | None = None) -> Response:
        data = s.GoalTransitionInput(data=request.data)
        data.is_valid(raise_exception=True)
        goal = services.goal_transition(
            goal=self.get_object(),
            to=data.validated_data["state"],
            reason=data.validated_data["reason"],
            actor=request.user,
        )
        return Response(s.GoalSerializer(goal).data)

    @extend_schema(responses=s.GoalEventSerializer(many=True), summary="The goal's history of state changes")
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def events(self, request: Request, pk: str | None = None) -> Response:
        rows = selectors.goal_events(goal=self.get_object())
        return Response(s.GoalEventSerializer(rows, many=True).data)

    @extend_schema(
        responses=s.GoalSerializer(many=True), summary="Active goals in the order they get GPU work"
    )
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def queue(self, request: Request) -> Response:
        return Response(s.GoalSerializer(selectors.goal_work_queue(), many=True).data)
