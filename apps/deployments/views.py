from __future__ import annotations

from typing import Any

from django.views.generic import DetailView

from apps.core.pages import FilteredListView
from apps.deployments import selectors
from apps.deployments.filters import DeploymentFilter
from apps.deployments.models import Deployment


class DeploymentListView(FilteredListView):
    queryset = selectors.deployment_list()
    filterset_class = DeploymentFilter
    template_name = "deployments/deployment_list.html"
    section = "deployments"


class DeploymentDetailView(DetailView):
    queryset = selectors.deployment_list()
    slug_field = "name"
    slug_url_kwarg = "name"
    template_name = "deployments/deployment_detail.html"
    context_object_name = "deployment"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        deployment: Deployment = self.object
        return super().get_context_data(
            section="deployments",
            releases=selectors.release_list().filter(deployment=deployment),
            verification=selectors.latest_verification(deployment=deployment),
            **kwargs,
        )
