from rest_framework.routers import DefaultRouter

from apps.models.api import views


def register(router: DefaultRouter) -> None:
    router.register("registered-models", views.RegisteredModelViewSet, basename="registeredmodel")
    router.register("model-versions", views.ModelVersionViewSet, basename="modelversion")
    router.register("model-files", views.ModelFileViewSet, basename="modelfile")
    router.register("model-aliases", views.ModelAliasViewSet, basename="modelalias")
    router.register("scans", views.ScanRunViewSet, basename="scanrun")
