from django.urls import path
from rest_framework.routers import DefaultRouter

from apps.fleet.api import views


def register(router: DefaultRouter) -> None:
    router.register("nodes", views.NodeViewSet, basename="node")
    router.register("devices", views.DeviceViewSet, basename="device")
    router.register("telemetry-samples", views.TelemetrySampleViewSet, basename="telemetrysample")


urlpatterns = [
    path("telemetry/latest/", views.TelemetrySnapshotView.as_view(), name="telemetry-latest"),
]
