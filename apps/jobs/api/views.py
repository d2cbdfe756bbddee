from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceCreateMixin
from apps.core.api.permissions import request_role
from apps.jobs import selectors, services
from apps.jobs.api.serializers import (
    JobCancelInput,
    JobCheckpointSerializer,
    JobCreateInput,
    JobEventSerializer,
    JobSerializer,
)
from apps.jobs.filters import JobFilter
from apps.jobs.models import Job

REFUSED = OpenApiResponse(description="Refused: the job's state forbids it, or no device can take it now")


class JobViewSet(ServiceCreateMixin, viewsets.ReadOnlyModelViewSet):
    """Jobs: fine-tunes, evaluations, benchmarks, conversions and self-tests, queued by priority then
    age. Device kinds wait until the dispatcher reserves their memory on a device."""

    queryset = selectors.job_list()
    serializer_class = JobSerializer
    create_input = JobCreateInput
    create_summary = (
        "Queue a job: parameters are checked against its kind (400 naming the parameter); a device "
        "kind no device could take now is refused (409) unless it may wait for room; convert is admin only"
    )
    create_refusals = {403: OpenApiResponse(description="An admin-only kind"), 409: REFUSED}
    filterset_class = JobFilter
    search_fields = ["message", "error", "worker", "queue", "task_id"]
    ordering_fields = ["created_at", "priority", "state", "started_at", "finished_at"]
    action_verbs = {"cancel": "change", "retry": "add"}

    def create_with(self, data: dict[str, Any]) -> Job:
        return services.job_create(
            created_by=self.request.user, acting_role=request_role(self.request), **data
        )

    @extend_schema(
        request=JobCancelInput,
        responses={200: JobSerializer, 409: REFUSED},
        summary="Cancel a job: a queued one at once, a running one at its next step (a fine-tune with "
        "save writes a checkpoint first)",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        save = self.validated_input(JobCancelInput)["save"]
        return self.respond(services.job_cancel(job=self.get_object(), save=save))

    @extend_schema(
        request=None,
        responses={
            201: JobSerializer,
            403: OpenApiResponse(description="An admin-only kind (convert), retried by a non-admin"),
            409: REFUSED,
        },
        summary="Retry a failed or cancelled job as a new job (a fine-tune resumes from its checkpoints)",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = services.job_retry(
            job=self.get_object(), created_by=request.user, acting_role=request_role(request)
        )
        return self.respond(job, status.HTTP_201_CREATED)

    @extend_schema(responses=JobEventSerializer(many=True), summary="The job's log, oldest first")
    @action(detail=True, methods=["get"], filter_backends=[], serializer_class=JobEventSerializer)
    def events(self, request: Request, pk: str | None = None) -> Response:
        page = self.paginate_queryset(selectors.job_event_list(job=self.get_object()))
        return self.get_paginated_response(JobEventSerializer(page, many=True).data)

    @extend_schema(
        responses=OpenApiResponse(
            response=OpenApiTypes.OBJECT,
            description='The series by name, each in step order: {"train_loss": [[step, value], ...], '
            '"eval_loss": [...], "learning_rate": [...], ...}',
        ),
        summary="The job's metric series (losses, learning rate, throughput)",
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def metrics(self, request: Request, pk: str | None = None) -> Response:
        series = selectors.job_series(job=self.get_object())
        return Response({name: [[step, value] for step, value in points] for name, points in series.items()})

    @extend_schema(
        responses=JobCheckpointSerializer(many=True),
        summary="The job's complete checkpoints still on disk, newest first",
    )
    @action(
        detail=True,
        methods=["get"],
        filter_backends=[],
        pagination_class=None,
        serializer_class=JobCheckpointSerializer,
    )
    def checkpoints(self, request: Request, pk: str | None = None) -> Response:
        rows = selectors.job_checkpoints(job=self.get_object())
        return Response(JobCheckpointSerializer(rows, many=True).data)
