from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response

from apps.models import selectors, services
from apps.models.api import serializers as s
from apps.models.filters import ModelAliasFilter, ModelFileFilter, ModelVersionFilter, RegisteredModelFilter
from apps.models.models import RegisteredModel


@extend_schema_view(partial_update=extend_schema(request=s.RegisteredModelInput))
class RegisteredModelViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Registered models. Operators register, edit and archive them; nothing is deleted:
    DELETE answers 405 and points at `archive`."""

    queryset = selectors.registered_model_list()
    serializer_class = s.RegisteredModelSerializer
    filterset_class = RegisteredModelFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "updated_at"]

    def _out(self, model: RegisteredModel, code: int = status.HTTP_200_OK) -> Response:
        fresh = selectors.registered_model_list().get(pk=model.pk)
        return Response(
            s.RegisteredModelSerializer(fresh, context=self.get_serializer_context()).data, status=code
        )

    @extend_schema(request=s.RegisteredModelInput, responses={201: s.RegisteredModelSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.RegisteredModelInput(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.model_register(owner=request.user, **data.validated_data)
        return self._out(model, status.HTTP_201_CREATED)

    @extend_schema(request=s.RegisteredModelInput, responses=s.RegisteredModelSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_object()
        data = s.RegisteredModelInput(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        return self._out(services.model_update(model=model, **data.validated_data))

    @extend_schema(
        request=None, responses=s.RegisteredModelSerializer, summary="Archive a model (instead of deleting)"
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str | None = None) -> Response:
        return self._out(services.model_archive(model=self.get_object()))

    @extend_schema(
        request=None, responses=s.RegisteredModelSerializer, summary="Bring an archived model back"
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        return self._out(services.model_restore(model=self.get_object()))

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if request.method == "DELETE":
            raise MethodNotAllowed(
                "DELETE", detail="Models are archived, not deleted: POST to this model's archive/ URL."
            )
        return super().http_method_not_allowed(request, *args, **kwargs)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Versions of registered models, with their validation state."""

    queryset = selectors.model_version_list()
    serializer_class = s.ModelVersionSerializer
    filterset_class = ModelVersionFilter
    search_fields = ["model__name", "path", "sha256"]
    ordering_fields = ["created_at", "number", "size_bytes", "params_count"]


class ModelFileViewSet(viewsets.ReadOnlyModelViewSet):
    """The files of model versions, as discovery last saw them."""

    queryset = selectors.model_file_list()
    serializer_class = s.ModelFileSerializer
    filterset_class = ModelFileFilter
    search_fields = ["path", "sha256"]
    ordering_fields = ["path", "size_bytes", "mtime"]


class ModelAliasViewSet(viewsets.ReadOnlyModelViewSet):
    """Stable names (production, staging) for model versions."""

    queryset = selectors.model_alias_list()
    serializer_class = s.ModelAliasSerializer
    filterset_class = ModelAliasFilter
    search_fields = ["name", "model__name"]
    ordering_fields = ["name", "updated_at"]
