from __future__ import annotations

from typing import Any

from django.views.generic import DetailView

from apps.core.pages import FilteredListView
from apps.models import selectors
from apps.models.filters import RegisteredModelFilter
from apps.models.models import ModelVersion, RegisteredModel


class ModelListView(FilteredListView):
    queryset = selectors.registered_model_list()
    filterset_class = RegisteredModelFilter
    template_name = "models/model_list.html"
    section = "models"


class ModelDetailView(DetailView):
    queryset = selectors.registered_model_list()
    template_name = "models/model_detail.html"
    context_object_name = "model"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        model: RegisteredModel = self.object
        versions = selectors.model_version_list().filter(model=model).order_by("-number")
        return super().get_context_data(section="models", versions=versions, **kwargs)


class VersionDetailView(DetailView):
    queryset = selectors.model_version_list()
    template_name = "models/version_detail.html"
    context_object_name = "version"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        version: ModelVersion = self.object
        return super().get_context_data(
            section="models",
            files=version.files.order_by("path"),
            aliases=version.aliases.order_by("name"),
            children=version.children.select_related("model").order_by("model__name", "number"),
            **kwargs,
        )
