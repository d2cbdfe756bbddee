from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceCreateMixin, ServiceWriteMixin
from apps.deployments import selectors, services
from apps.deployments.api import serializers as s
from apps.deployments.filters import CheckResultFilter, DeploymentFilter, ReleaseFilter, VerificationRunFilter
from apps.deployments.models import Deployment, Release


class DeploymentViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
    """Deployments: named serving endpoints. Never deleted: retired."""

    queryset = selectors.deployment_list()
    serializer_class = s.DeploymentSerializer
    create_input = s.DeploymentCreateInput
    update_input = s.DeploymentUpdateInput
    filterset_class = DeploymentFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "state", "created_at", "updated_at"]
    action_verbs = {"activate": "change", "pause": "change", "retire": "change"}

    def create_with(self, data: dict[str, Any]) -> Deployment:
        return services.deployment_create(created_by=self.request.user, **data)

    def update_with(self, obj: Deployment, data: dict[str, Any]) -> Deployment:
        return services.deployment_update(deployment=obj, **data)

    @extend_schema(request=None, responses=s.DeploymentSerializer, summary="Serve (from draft or paused)")
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.deployment_activate(deployment=self.get_object()))

    @extend_schema(request=None, responses=s.DeploymentSerializer, summary="Stop serving, keeping everything")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.deployment_pause(deployment=self.get_object()))

    @extend_schema(
        request=None, responses=s.DeploymentSerializer, summary="Retire for good (instead of delete)"
    )
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.deployment_retire(deployment=self.get_object()))


class ReleaseViewSet(ServiceCreateMixin, viewsets.ReadOnlyModelViewSet):
    """Releases: a model version rolled out to a deployment with a strategy."""

    queryset = selectors.release_list()
    serializer_class = s.ReleaseSerializer
    create_input = s.ReleaseCreateInput
    create_summary = "Ask for a release of a valid version to a deployment (it starts pending)"
    filterset_class = ReleaseFilter
    search_fields = ["deployment__name", "model_version__model__name", "reason"]
    ordering_fields = ["created_at", "state"]
    action_verbs = {"cancel": "change"}

    def create_with(self, data: dict[str, Any]) -> Release:
        return services.release_create(created_by=self.request.user, **data)

    @extend_schema(
        request=None, responses=s.ReleaseSerializer, summary="Withdraw a release that has not started"
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        release = services.release_cancel(release=self.get_object())
        return Response(s.ReleaseSerializer(release).data)


class VerificationRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Verification runs of releases, each with its check results."""

    queryset = selectors.verification_run_list()
    serializer_class = s.VerificationRunSerializer
    filterset_class = VerificationRunFilter
    ordering_fields = ["created_at", "state"]


class CheckResultViewSet(viewsets.ReadOnlyModelViewSet):
    """Single checks of verification runs: status, duration, reason, evidence."""

    queryset = selectors.check_result_list()
    serializer_class = s.CheckResultSerializer
    filterset_class = CheckResultFilter
    search_fields = ["reason"]
    ordering_fields = ["checked_at", "name", "status", "duration_ms"]
