from rest_framework.routers import DefaultRouter

from apps.alerts.api import views


def register(router: DefaultRouter) -> None:
    router.register("alert-rules", views.AlertRuleViewSet, basename="alertrule")
    router.register("alerts", views.AlertViewSet, basename="alert")
    router.register("silences", views.SilenceViewSet, basename="silence")
    router.register("notification-channels", views.NotificationChannelViewSet, basename="notificationchannel")
    router.register("inhibit-rules", views.InhibitRuleViewSet, basename="inhibitrule")
    router.register("alert-metrics", views.AlertMetricViewSet, basename="alertmetric")
