from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.errors import body
from apps.core.domain.errors import Conflict
from apps.core.models import ApiKey
from apps.models.models import ModelVersion
from apps.serving import inference, placing, selectors
from apps.serving.api import serializers as s
from apps.serving.domain.tasks import task_problem
from apps.serving.filters import PlacementFilter
from apps.serving.models import InferenceRecord, Placement, ServingProfile


class PlacementViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Which model version is loaded (or loading, or was) on which device.

    POST loads a version: the scheduler picks a device where it fits (or the one asked for),
    evicting idle unpinned placements where room is needed, and the device's worker loads it.
    409 says why no device can take it."""

    queryset = selectors.placement_list()
    serializer_class = s.PlacementSerializer
    filterset_class = PlacementFilter
    search_fields = ["version__model__name", "device__name", "device__node__name"]
    ordering_fields = ["created_at", "updated_at", "last_used_at", "reserved_bytes"]
    action_verbs = {"unload": "change", "pin": "change"}

    @extend_schema(request=s.PlacementCreateInput, responses={201: s.PlacementSerializer})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        data = s.PlacementCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        placement = placing.placement_load(**data.validated_data, requested_by=request.user)
        return Response(s.PlacementSerializer(self._fresh(placement)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.PlacementUnloadInput, responses=s.PlacementSerializer)
    @action(detail=True, methods=["post"])
    def unload(self, request: Request, pk: str | None = None) -> Response:
        """Unload it: cancelled if no worker took it yet, else its worker drains its requests and frees it.
        Adapters built on it are unloaded with it."""
        data = s.PlacementUnloadInput(data=request.data)
        data.is_valid(raise_exception=True)
        placement = self.get_object()
        if not placing.placement_unload(placement=placement, reason=data.validated_data["reason"]):
            raise Conflict(f"Placement {placement.pk} is {placement.state}: there is nothing to unload.")
        return Response(s.PlacementSerializer(self._fresh(placement)).data)

    @extend_schema(request=s.PlacementPinInput, responses=s.PlacementSerializer)
    @action(detail=True, methods=["post"])
    def pin(self, request: Request, pk: str | None = None) -> Response:
        """Pin it (never evicted, nor unloaded by its keep-alive) or unpin it."""
        data = s.PlacementPinInput(data=request.data)
        data.is_valid(raise_exception=True)
        placement = placing.placement_pin(placement=self.get_object(), pinned=data.validated_data["pinned"])
        return Response(s.PlacementSerializer(self._fresh(placement)).data)

    def _fresh(self, placement: Placement) -> Placement:
        return selectors.placement_list().get(pk=placement.pk)


class ServingProfileViewSet(viewsets.ModelViewSet):
    """How a version is served: bulkhead limits, request timeout, breaker thresholds, keep-alive,
    pinning and preloading. `allow_pickle` is set by admins in the admin site only."""

    queryset = ServingProfile.objects.select_related("version__model").order_by("pk")
    serializer_class = s.ServingProfileSerializer
    filterset_fields = ["version", "preload", "pinned"]


class InferenceRecordViewSet(viewsets.ReadOnlyModelViewSet):
    """One row per inference request a worker served: outcome, queue wait, compute time, tokens."""

    queryset = InferenceRecord.objects.order_by("-at", "-pk")
    serializer_class = s.InferenceRecordSerializer
    filterset_fields = ["version", "placement", "task", "outcome", "error_class"]
    ordering_fields = ["at", "compute_ms", "queue_ms"]


class InferenceView(APIView):
    """Ask a loaded model version: text generation, embeddings, or raw tensors (ONNX).

    The request goes to one of the version's loaded placements whose worker is alive, through
    that placement's circuit breaker (open: 503 with the reason) and the version's bulkhead (full:
    429 with Retry-After). 503 also when the placement's worker is silent (the placement is lost,
    and its version loaded elsewhere where it can be), when this server already has its bound of
    requests waiting on the device, and when the broker or MOC's Redis cannot be reached. 409: not
    loaded; 504: no answer in time; 400: input that does not fit the model, naming the field.
    403 for an API key limited to some deployments (ApiKey.limited): it calls those, never a
    version directly."""

    queryset = Placement.objects.all()  # a request uses placements: operators and admins may ask

    @extend_schema(
        request=s.InferenceInput,
        responses={
            200: s.InferenceOutput,
            400: OpenApiResponse(
                s.ErrorBody, description="Input the version does not take; `fields` names it"
            ),
            403: OpenApiResponse(
                s.ErrorBody, description="Not an operator; or an API key limited to some deployments"
            ),
            409: OpenApiResponse(s.ErrorBody, description="Not loaded (Retry-After while it loads)"),
            429: OpenApiResponse(s.ErrorBody, description="The version's bulkhead is full; see Retry-After"),
            503: OpenApiResponse(
                s.ErrorBody,
                description="Circuit breaker open, the device or its worker lost, requests to the "
                "device at their bound, or the broker unreachable; Retry-After where waiting helps",
            ),
            504: OpenApiResponse(s.ErrorBody, description="No answer within the request's time limit"),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        if isinstance(request.auth, ApiKey) and request.auth.limited:
            raise PermissionDenied("This API key is limited to some deployments; call them instead.")
        version = get_object_or_404(ModelVersion.objects.select_related("model", "serving"), pk=pk)
        data = s.InferenceInput(data=request.data)
        data.is_valid(raise_exception=True)
        task = data.validated_data["task"]
        if problem := task_problem(str(version), version.kind, version.format, task):
            raise ValidationError({"task": problem})
        try:
            answer = inference.infer(
                version=version,
                task=task,
                data=data.validated_data["input"],
                placement_id=data.validated_data.get("placement"),
            )
        except inference.Refused as refused:
            return refusal_response(refused)
        return Response(s.InferenceOutput(answer).data)


def refusal_response(refused: inference.Refused) -> Response:
    """A refused inference request as the API answers it (deployments' traffic answers the same)."""
    fields = {refused.field: [refused.reason]} if refused.field else {}
    headers = {"Retry-After": str(refused.retry_after_s)} if refused.retry_after_s else {}
    return Response(
        body(refused.error_class or "refused", refused.reason, fields), status=refused.status, headers=headers
    )
