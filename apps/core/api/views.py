from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import selectors, services
from apps.core.api import serializers as s
from apps.core.api.permissions import KeysManagedByPeople, request_role
from apps.core.domain.roles import Role
from apps.core.filters import AuditEventFilter, TaskDeliveryFilter
from apps.core.models import ApiKey, TaskDelivery


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=s.MeSerializer, summary="Who the caller is and with which role")
    def get(self, request: Request) -> Response:
        role = request_role(request)
        key = request.auth if isinstance(request.auth, ApiKey) else None
        data = {
            "id": request.user.pk,
            "username": request.user.get_username(),
            "role": role.value if role else None,
            "api_key": key.prefix if key else None,
        }
        return Response(s.MeSerializer(data).data)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log: every write through the API, the pages and the admin."""

    queryset = selectors.audit_event_list()
    serializer_class = s.AuditEventSerializer
    filterset_class = AuditEventFilter
    search_fields = ["actor_label", "action", "object_repr"]
    ordering_fields = ["created_at", "action"]


class TaskDeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """How often each task message was delivered, and which were poisoned."""

    queryset = TaskDelivery.objects.all()
    serializer_class = s.TaskDeliverySerializer
    filterset_class = TaskDeliveryFilter
    search_fields = ["task_name", "task_id"]
    ordering_fields = ["first_delivered_at", "deliveries"]


class ApiKeyViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """The caller's own API keys. Admins may pass ?all=1 to see everyone's."""

    serializer_class = s.ApiKeySerializer
    permission_classes = [KeysManagedByPeople]
    filterset_fields = ["revoked", "role"]
    search_fields = ["name", "prefix"]
    ordering_fields = ["created", "name"]
    queryset = ApiKey.objects.none()
    # The primary key is "<prefix>.<hash>": a dot the router refuses, and a hash not to hand out.
    lookup_field = "prefix"

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        see_all = self.request.query_params.get("all") in {"1", "true"}
        if see_all and request_role(self.request) is Role.ADMIN:
            return selectors.api_key_list()
        return selectors.api_key_list(owner_id=self.request.user.pk)

    @extend_schema(request=s.ApiKeyCreateInput, responses={201: s.ApiKeyCreatedSerializer})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        data = s.ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, secret = services.api_key_create(
            owner=request.user,
            acting_role=request_role(request),
            name=data.validated_data["name"],
            role=Role(data.validated_data["role"]),
            expiry_date=data.validated_data.get("expiry_date"),
        )
        out = s.ApiKeyCreatedSerializer(api_key).data
        out["key"] = secret
        return Response(out, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None, responses=s.ApiKeySerializer, summary="Revoke a key (it stops working at once)"
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, prefix: str | None = None) -> Response:
        api_key = services.api_key_revoke(api_key=self.get_object())
        return Response(s.ApiKeySerializer(api_key).data)
