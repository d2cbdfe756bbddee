from django.urls import path
from rest_framework.routers import DefaultRouter

from apps.core.api import views


def register(router: DefaultRouter) -> None:
    router.register("audit-events", views.AuditEventViewSet, basename="auditevent")
    router.register("api-keys", views.ApiKeyViewSet, basename="apikey")
    router.register("task-deliveries", views.TaskDeliveryViewSet, basename="taskdelivery")


urlpatterns = [path("me/", views.MeView.as_view(), name="me")]
