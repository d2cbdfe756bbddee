from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.deployments import selectors, services
from apps.deployments.api import serializers as s
from apps.deployments.filters import CheckResultFilter, DeploymentFilter, ReleaseFilter, VerificationRunFilter


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deployments: named serving endpoints. Never deleted: retired."""

    queryset = selectors.deployment_list()
    serializer_class = s.DeploymentSerializer
    filterset_class = DeploymentFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "state", "created_at", "updated_at"]
    action_verbs = {"activate": "change", "pause": "change", "retire": "change"}

    def _out(self, deployment_pk: int, code: int = status.HTTP_200_OK) -> Response:
        return Response(s.DeploymentSerializer(self.get_queryset().get(pk=deployment_pk)).data, status=code)

    @extend_schema(request=s.DeploymentCreateInput, responses={201: s.DeploymentSerializer})
    def create(self, request: Request) -> Response:
        data = s.DeploymentCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_create(created_by=request.user, **data.validated_data)
        return self._out(deployment.pk, status.HTTP_201_CREATED)

    @extend_schema(request=s.DeploymentUpdateInput, responses=s.DeploymentSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=s.DeploymentUpdateInput, responses=s.DeploymentSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        deployment = self.get_object()
        data = s.DeploymentUpdateInput(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        services.deployment_update(deployment=deployment, **data.validated_data)
        return self._out(deployment.pk)

    @extend_schema(request=None, responses=s.DeploymentSerializer, summary="Serve (from draft or paused)")
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        return self._out(services.deployment_activate(deployment=self.get_object()).pk)

    @extend_schema(request=None, responses=s.DeploymentSerializer, summary="Stop serving, keeping everything")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._out(services.deployment_pause(deployment=self.get_object()).pk)

    @extend_schema(
        request=None, responses=s.DeploymentSerializer, summary="Retire for good (instead of delete)"
    )
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str | None = None) -> Response:
        return self._out(services.deployment_retire(deployment=self.get_object()).pk)


class ReleaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Releases: a model version rolled out to a deployment with a strategy."""

    queryset = selectors.release_list()
    serializer_class = s.ReleaseSerializer
    filterset_class = ReleaseFilter
    search_fields = ["deployment__name", "model_version__model__name", "reason"]
    ordering_fields = ["created_at", "state"]
    action_verbs = {"cancel": "change"}

    @extend_schema(
        request=s.ReleaseCreateInput,
        responses={201: s.ReleaseSerializer},
        summary="Ask for a release of a valid version to a deployment (it starts pending)",
    )
    def create(self, request: Request) -> Response:
        data = s.ReleaseCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        release = services.release_create(created_by=request.user, **data.validated_data)
        return Response(s.ReleaseSerializer(release).data, status=status.HTTP_201_CREATED)

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
