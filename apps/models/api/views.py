from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceWriteMixin
from apps.models import selectors, services
from apps.models.api import serializers as s
from apps.models.filters import ModelAliasFilter, ModelFileFilter, ModelVersionFilter, RegisteredModelFilter
from apps.models.models import RegisteredModel


class RegisteredModelViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
    """Registered models. Operators register, edit and archive them; nothing is deleted:
    DELETE answers 405 and points at `archive`."""

    queryset = selectors.registered_model_list()
    serializer_class = s.RegisteredModelSerializer
    create_input = update_input = s.RegisteredModelInput
    filterset_class = RegisteredModelFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "updated_at"]

    def create_with(self, data: dict[str, Any]) -> RegisteredModel:
        return services.model_register(owner=self.request.user, **data)

    def update_with(self, obj: RegisteredModel, data: dict[str, Any]) -> RegisteredModel:
        return services.model_update(model=obj, **data)

    @extend_schema(
        request=None, responses=s.RegisteredModelSerializer, summary="Archive a model (instead of deleting)"
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.model_archive(model=self.get_object()))

    @extend_schema(
        request=None, responses=s.RegisteredModelSerializer, summary="Bring an archived model back"
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.model_restore(model=self.get_object()))

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
