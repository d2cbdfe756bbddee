from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed, NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceUpdateMixin, ServiceWriteMixin
from apps.models import scanning, selectors, services
from apps.models.api import serializers as s
from apps.models.filters import (
    ModelAliasFilter,
    ModelFileFilter,
    ModelVersionFilter,
    RegisteredModelFilter,
    ScanRunFilter,
)
from apps.models.models import ModelFile, ModelVersion, RegisteredModel


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

    @extend_schema(
        request=s.AliasSetInput,
        responses={200: s.ModelAliasSerializer, 201: s.ModelAliasSerializer},
        summary="Set an alias (201) or move it to another version (200), in one step",
    )
    @action(detail=True, methods=["post"], url_path="aliases")
    def alias_set(self, request: Request, pk: str | None = None) -> Response:
        model = self.get_object()
        alias, created = services.alias_set(model=model, **self.validated_input(s.AliasSetInput))
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.ModelAliasSerializer(alias).data, status=code)

    @extend_schema(request=None, responses={204: None}, summary="Clear an alias")
    @action(detail=True, methods=["delete"], url_path=r"aliases/(?P<alias>[^/]+)")
    def alias_clear(self, request: Request, pk: str | None = None, alias: str = "") -> Response:
        if not services.alias_clear(model=self.get_object(), name=alias):
            raise NotFound(f"This model has no alias '{alias}'.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if request.method == "DELETE":
            raise MethodNotAllowed(
                "DELETE", detail="Models are archived, not deleted: POST to this model's archive/ URL."
            )
        return super().http_method_not_allowed(request, *args, **kwargs)


class ModelVersionViewSet(ServiceUpdateMixin, viewsets.ReadOnlyModelViewSet):
    """Versions of registered models, with their files, validation report and VRAM estimate.
    Discovery creates them from files; operators set their lineage and archive them (never
    delete: DELETE answers 405)."""

    update_input = s.ModelVersionInput

    # Files without their headers: a version lists them, the model-files endpoint details them.
    queryset = selectors.model_version_list().prefetch_related(
        Prefetch(
            "files",
            queryset=ModelFile.objects.only("id", "version_id", "path", "format", "size_bytes", "sha256"),
        )
    )
    serializer_class = s.ModelVersionSerializer
    filterset_class = ModelVersionFilter
    search_fields = ["model__name", "path", "sha256"]
    ordering_fields = ["created_at", "number", "size_bytes", "params_count", "estimated_vram_bytes"]

    @extend_schema(
        request=None,
        responses={202: s.ModelVersionSerializer},
        summary="Validate this version again (queued; its report changes when a worker is done)",
    )
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, pk: str | None = None) -> Response:
        version = scanning.validation_request(version=self.get_object())
        return Response(self.get_serializer(version).data, status=status.HTTP_202_ACCEPTED)

    def update_with(self, obj: ModelVersion, data: dict[str, Any]) -> ModelVersion:
        return services.version_set_parent(version=obj, parent=data.get("parent", obj.parent))

    @extend_schema(request=None, responses=s.ModelVersionSerializer, summary="Archive a version")
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.version_archive(version=self.get_object()))

    @extend_schema(request=None, responses=s.ModelVersionSerializer, summary="Bring an archived version back")
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(services.version_restore(version=self.get_object()))

    @extend_schema(
        request=s.VersionMoveInput,
        responses=s.ModelVersionSerializer,
        summary="Make this version the next version of another model",
        description=(
            "For a folder a scan registered as a model of its own (v1) that is really a new version of "
            "another model, e.g. a retrained one: it becomes that model's next number, and the model "
            "it leaves is deleted. Only a model's sole version moves, and only while no alias, "
            "placement, release or deployment refers to it or its model; a refusal is a 400 under "
            "`model` or `version` saying why. Later scans leave it where it is (they match by path)."
        ),
    )
    @action(detail=True, methods=["post"])
    def move(self, request: Request, pk: str | None = None) -> Response:
        version = self.get_object()
        data = self.validated_input(s.VersionMoveInput)
        return self.respond(services.version_move(version=version, model=data["model"]))


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


class ScanRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Scans of the model roots: POST starts one (one at a time), GET follows its progress."""

    queryset = selectors.scan_list()
    serializer_class = s.ScanRunSerializer
    filterset_class = ScanRunFilter
    ordering_fields = ["created_at", "finished_at"]

    @extend_schema(
        request=None,
        responses={202: s.ScanRunSerializer},
        summary="Scan the model roots now (409 while another scan is queued or running)",
    )
    def create(self, request: Request) -> Response:
        scan = scanning.scan_request(user=request.user)
        return Response(self.get_serializer(scan).data, status=status.HTTP_202_ACCEPTED)
