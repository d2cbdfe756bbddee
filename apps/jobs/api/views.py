from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceCreateMixin
from apps.jobs import selectors, services
from apps.jobs.api.serializers import JobCreateInput, JobEventSerializer, JobSerializer
from apps.jobs.filters import JobFilter
from apps.jobs.models import Job


class JobViewSet(ServiceCreateMixin, viewsets.ReadOnlyModelViewSet):
    """Jobs: work queued for the workers (self-tests today; fine-tunes, evaluations, benchmarks later)."""

    queryset = selectors.job_list()
    serializer_class = JobSerializer
    create_input = JobCreateInput
    create_summary = "Queue a job"
    filterset_class = JobFilter
    search_fields = ["message", "error", "worker", "queue", "task_id"]
    ordering_fields = ["created_at", "priority", "state", "started_at", "finished_at"]
    action_verbs = {"cancel": "change"}

    def create_with(self, data: dict[str, Any]) -> Job:
        return services.job_create(created_by=self.request.user, **data)

    @extend_schema(
        request=None,
        responses=JobSerializer,
        summary="Cancel a job: a queued one at once, a running one at its next progress report",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = services.job_cancel(job=self.get_object())
        return Response(JobSerializer(job).data)

    @extend_schema(responses=JobEventSerializer(many=True), summary="The job's log, oldest first")
    @action(detail=True, methods=["get"], filter_backends=[], serializer_class=JobEventSerializer)
    def events(self, request: Request, pk: str | None = None) -> Response:
        page = self.paginate_queryset(selectors.job_event_list(job=self.get_object()))
        return self.get_paginated_response(JobEventSerializer(page, many=True).data)
