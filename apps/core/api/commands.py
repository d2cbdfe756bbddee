"""Create and update as commands (STYLE.md §4): validate an input serializer, call one service,
answer with the output serializer.

A viewset names its input serializers and implements `create_with` and/or `update_with`, each one
service call; the mixins do the HTTP part and give the OpenAPI schema the input serializer as the
request and `serializer_class` as the response, so the viewset needs no @extend_schema for them:

    class GoalViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
        serializer_class = GoalSerializer
        create_input = GoalCreateInput
        update_input = GoalUpdateInput

        def create_with(self, data: dict[str, Any]) -> Goal:
            return services.goal_create(owner=self.request.user, **data)

        def update_with(self, obj: Goal, data: dict[str, Any]) -> Goal:
            return services.goal_update(goal=obj, **data)

The create and update mixins are separate because a router routes PUT and PATCH to any viewset
that has an `update` method: a create-only viewset takes ServiceCreateMixin alone.
"""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response


class ServiceCommandMixin:
    """What the write mixins share: the input check, the response, and the schema.

    Create and update run the service and read the response in one transaction, so the response
    shows the object as the service left it, before what the service put off to the commit (a
    job's dispatch, say) can change it.
    """

    create_input: type[serializers.Serializer] | None = None
    create_summary: str | None = None
    # Refusals a create documents besides 400, e.g. {409: a response describing the conflict}.
    create_refusals: dict[int, Any] | None = None
    update_input: type[serializers.Serializer] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        output = getattr(cls, "serializer_class", None)
        schemas = {}
        if cls.create_input is not None and hasattr(cls, "create"):
            schemas["create"] = extend_schema(
                request=cls.create_input,
                responses={201: output, **(cls.create_refusals or {})},
                summary=cls.create_summary,
            )
        if cls.update_input is not None and hasattr(cls, "update"):
            schemas["update"] = extend_schema(request=cls.update_input, responses=output)
            schemas["partial_update"] = extend_schema(request=cls.update_input, responses=output)
        if schemas:
            extend_schema_view(**schemas)(cls)

    def validated_input(
        self, input_class: type[serializers.Serializer], *, partial: bool = False
    ) -> dict[str, Any]:
        data = input_class(data=self.request.data, partial=partial, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        return data.validated_data

    def respond(self, obj: models.Model, code: int = status.HTTP_200_OK) -> Response:
        """The object as a GET would show it: read again through the viewset's queryset, so the
        output serializer gets the annotations and related rows that queryset brings."""
        return Response(self.get_serializer(self.get_queryset().get(pk=obj.pk)).data, status=code)


class ServiceCreateMixin(ServiceCommandMixin):
    """POST: `create_input`, then `create_with(validated data)`; answers 201."""

    def create_with(self, data: dict[str, Any]) -> models.Model:
        raise NotImplementedError

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated_input(self.create_input)
        with transaction.atomic():
            return self.respond(self.create_with(data), status.HTTP_201_CREATED)


class ServiceUpdateMixin(ServiceCommandMixin):
    """PUT and PATCH (partial): `update_input`, then `update_with(object, validated data)`."""

    def update_with(self, obj: models.Model, data: dict[str, Any]) -> models.Model:
        raise NotImplementedError

    def update(self, request: Request, *args: Any, partial: bool = False, **kwargs: Any) -> Response:
        obj = self.get_object()
        data = self.validated_input(self.update_input, partial=partial)
        with transaction.atomic():
            return self.respond(self.update_with(obj, data))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)


class ServiceWriteMixin(ServiceCreateMixin, ServiceUpdateMixin):
    """Both: POST creates, PUT and PATCH update."""
