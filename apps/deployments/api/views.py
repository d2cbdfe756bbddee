from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceCreateMixin, ServiceWriteMixin
from apps.core.api.permissions import request_role
from apps.deployments import rollout, selectors, services, verification
from apps.deployments.api import serializers as s
from apps.deployments.domain.naming import NAME_RE
from apps.deployments.filters import CheckResultFilter, DeploymentFilter, ReleaseFilter, VerificationRunFilter
from apps.deployments.models import Deployment, KeyGrant, Release

REFUSED = OpenApiResponse(description="Refused: the state forbids it, or another action won the race")


class DeploymentViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
    """Deployments: named serving endpoints, found by name or by id. Never deleted: retired."""

    queryset = selectors.deployment_list()
    serializer_class = s.DeploymentSerializer
    create_input = s.DeploymentCreateInput
    update_input = s.DeploymentUpdateInput
    filterset_class = DeploymentFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "state", "environment", "created_at", "updated_at"]
    action_verbs = {"activate": "change", "pause": "change", "retire": "change"}
    # The schema documents the path's `ref` as the name; digits are taken as the id.
    lookup_field = "name"
    lookup_url_kwarg = "ref"
    lookup_value_regex = rf"[0-9]+|{NAME_RE.pattern.strip('^$')}"

    def get_object(self) -> Deployment:
        queryset = self.filter_queryset(self.get_queryset())
        try:
            deployment = selectors.deployment_by_ref(queryset, self.kwargs[self.lookup_url_kwarg])
        except Deployment.DoesNotExist:
            raise Http404 from None
        self.check_object_permissions(self.request, deployment)
        return deployment

    def create_with(self, data: dict[str, Any]) -> Deployment:
        return services.deployment_create(created_by=self.request.user, **data)

    def update_with(self, obj: Deployment, data: dict[str, Any]) -> Deployment:
        return services.deployment_update(deployment=obj, **data)

    @extend_schema(request=None, responses=s.DeploymentSerializer, summary="Serve (from draft or paused)")
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, ref: str | None = None) -> Response:
        return self.respond(services.deployment_activate(deployment=self.get_object()))

    @extend_schema(request=None, responses=s.DeploymentSerializer, summary="Stop serving, keeping everything")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, ref: str | None = None) -> Response:
        return self.respond(services.deployment_pause(deployment=self.get_object()))

    @extend_schema(
        request=None, responses=s.DeploymentSerializer, summary="Retire for good (instead of delete)"
    )
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, ref: str | None = None) -> Response:
        return self.respond(services.deployment_retire(deployment=self.get_object()))


def _release_action(summary: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """The schema of an operator's action on a release: an optional reason in, the release out."""
    return extend_schema(
        request=s.ReleaseActionInput, responses={200: s.ReleaseSerializer, 409: REFUSED}, summary=summary
    )


class ReleaseViewSet(ServiceCreateMixin, viewsets.ReadOnlyModelViewSet):
    """Releases: a model version rolled out to a deployment with a strategy, and what happened to it.

    Operators promote, pause, resume, abort and roll back; each answers 409 with the reason when
    the release's state forbids it or another action got there first."""

    queryset = selectors.release_list()
    serializer_class = s.ReleaseSerializer
    create_input = s.ReleaseCreateInput
    create_summary = (
        "Release a valid version of the deployment's model (it starts pending); a production "
        "deployment needs the version's passed staging verification unless an admin overrides"
    )
    create_refusals = {409: REFUSED}  # the deployment already has a release in progress
    filterset_class = ReleaseFilter
    search_fields = ["deployment__name", "model_version__model__name", "reason"]
    ordering_fields = ["created_at", "state"]
    action_verbs = {
        "cancel": "change",
        "promote": "change",
        "pause": "change",
        "resume": "change",
        "abort": "change",
        "rollback": "change",
    }

    def create_with(self, data: dict[str, Any]) -> Release:
        return services.release_create(
            created_by=self.request.user, acting_role=request_role(self.request), **data
        )

    def _act(self, move: Callable[..., Release]) -> Response:
        reason = self.validated_input(s.ReleaseActionInput)["reason"]
        return self.respond(move(release=self.get_object(), by=self.request.user, reason=reason))

    @extend_schema(
        request=None,
        responses={200: s.ReleaseSerializer, 409: REFUSED},
        summary="Withdraw a release not started",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.release_cancel(release=self.get_object()))

    @_release_action("Promote now: all traffic to it, skipping the remaining steps")
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str | None = None) -> Response:
        return self._act(rollout.release_promote)

    @_release_action("Hold it where it is until resumed")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._act(rollout.release_pause)

    @_release_action("Go on from where it was paused")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._act(rollout.release_resume)

    @_release_action("Stop it: traffic back to stable at once, its replicas unloaded after a grace")
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, pk: str | None = None) -> Response:
        return self._act(rollout.release_abort)

    @_release_action("Roll back: traffic returns to the previous release at once")
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        return self._act(rollout.release_rollback)

    @extend_schema(responses=s.ReleaseEventSerializer(many=True), summary="Its timeline, oldest first")
    @action(detail=True, methods=["get"], filter_backends=[], serializer_class=s.ReleaseEventSerializer)
    def events(self, request: Request, pk: str | None = None) -> Response:
        release = self.get_object()
        page = self.paginate_queryset(selectors.release_event_list().filter(release=release))
        return self.get_paginated_response(s.ReleaseEventSerializer(page, many=True).data)


class VerificationCheckViewSet(viewsets.ViewSet):
    """The verification suite: every check a release's verification runs, in order."""

    @extend_schema(responses=s.CheckSpecSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response(s.CheckSpecSerializer(verification.suite(), many=True).data)


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


_NAME = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The deployment's name")


class KeyGrantViewSet(ServiceCreateMixin, viewsets.GenericViewSet):
    """The API keys limited to a deployment. A key with grants may call only the deployments it was
    granted through the OpenAI-compatible API (/v1/); a key with none, every deployment its role
    may. Everyone with a role sees them; admins grant and take back."""

    queryset = selectors.key_grant_list()
    serializer_class = s.KeyGrantSerializer
    create_input = s.KeyGrantInput
    create_summary = "Let an API key call this deployment (from its first grant, only the ones granted)"
    create_refusals = {409: OpenApiResponse(description="The key may already call it")}
    filter_backends: list[Any] = []

    def deployment(self) -> Deployment:
        try:
            return selectors.deployment_by_ref(Deployment.objects.all(), self.kwargs["name"])
        except (Deployment.DoesNotExist, ValueError):
            raise Http404 from None

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return KeyGrant.objects.none()
        return super().get_queryset().filter(deployment=self.deployment())

    def create_with(self, data: dict[str, Any]) -> KeyGrant:
        return services.key_grant_create(deployment=self.deployment(), **data)

    @extend_schema(parameters=[_NAME], summary="The API keys that may call it")
    def list(self, request: Request, name: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(parameters=[_NAME])
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)

    @extend_schema(
        parameters=[
            _NAME,
            OpenApiParameter(
                "key_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The key's id (its prefix)"
            ),
        ],
        responses={204: None},
        summary="Take the grant back (with none left, the key may call every deployment its role may)",
    )
    def destroy(self, request: Request, name: str, key_id: str) -> Response:
        grant = get_object_or_404(self.get_queryset(), key__prefix=key_id)
        services.key_grant_delete(grant=grant)
        return Response(status=status.HTTP_204_NO_CONTENT)
