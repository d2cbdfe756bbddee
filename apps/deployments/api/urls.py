from rest_framework.routers import DefaultRouter

from apps.deployments.api import views


def register(router: DefaultRouter) -> None:
    router.register("deployments", views.DeploymentViewSet, basename="deployment")
    router.register("releases", views.ReleaseViewSet, basename="release")
    router.register("verification-runs", views.VerificationRunViewSet, basename="verificationrun")
    router.register("check-results", views.CheckResultViewSet, basename="checkresult")
