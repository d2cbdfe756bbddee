from django.urls import path
from rest_framework.routers import DefaultRouter

from apps.serving.api import views


def register(router: DefaultRouter) -> None:
    router.register("placements", views.PlacementViewSet, basename="placement")
    router.register("serving-profiles", views.ServingProfileViewSet, basename="servingprofile")
    router.register("inference-records", views.InferenceRecordViewSet, basename="inferencerecord")


urlpatterns = [
    path("model-versions/<int:pk>/infer/", views.InferenceView.as_view(), name="modelversion-infer"),
]
