from django.urls import path
from rest_framework.routers import DefaultRouter

from apps.fleet.api import views


def register(router: DefaultRouter) -> None:
    router.register("nodes", views.NodeViewSet, basename="node")
    router.register("devices", views.DeviceViewSet, basename="device")
    router.register("telemetry-samples", views.TelemetrySampleViewSet, basename="telemetrysample")
    router.register("placements", views.PlacementViewSet, basename="placement")
    router.register("serving-profiles", views.ServingProfileViewSet, basename="servingprofile")
    router.register("inference-records", views.InferenceRecordViewSet, basename="inferencerecord")


urlpatterns = [
    path("telemetry/latest/", views.TelemetrySnapshotView.as_view(), name="telemetry-latest"),
    path("model-versions/<int:pk>/infer/", views.InferenceView.as_view(), name="modelversion-infer"),
]
