from django.urls import path
from rest_framework.routers import DefaultRouter

from apps.deployments.api import traffic, views


def register(router: DefaultRouter) -> None:
    router.register("deployments", views.DeploymentViewSet, basename="deployment")
    router.register("releases", views.ReleaseViewSet, basename="release")
    router.register("verification-checks", views.VerificationCheckViewSet, basename="verificationcheck")
    router.register("verification-runs", views.VerificationRunViewSet, basename="verificationrun")
    router.register("check-results", views.CheckResultViewSet, basename="checkresult")


# Before the router's: /deployments/<name>/infer/ (and figures, keys) are not the viewset's routes.
urlpatterns = [
    path("deployments/<str:name>/infer/", traffic.DeploymentInferView.as_view(), name="deployment-infer"),
    path(
        "deployments/<str:name>/figures/", traffic.DeploymentFiguresView.as_view(), name="deployment-figures"
    ),
    path(
        "deployments/<str:name>/keys/",
        views.KeyGrantViewSet.as_view({"get": "list", "post": "create"}),
        name="deployment-keys",
    ),
    path(
        "deployments/<str:name>/keys/<str:key_id>/",
        views.KeyGrantViewSet.as_view({"delete": "destroy"}),
        name="deployment-key",
    ),
]
