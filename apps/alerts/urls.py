from django.urls import path

from apps.alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.AlertListView.as_view(), name="list"),
    path("<int:pk>/", views.AlertDetailView.as_view(), name="detail"),
    path("<int:pk>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("rules/", views.AlertRuleListView.as_view(), name="rules"),
    path("rules/<int:pk>/", views.AlertRuleDetailView.as_view(), name="rule_detail"),
    path("silences/", views.SilenceListView.as_view(), name="silences"),
    path("silences/<int:pk>/expire/", views.silence_expire, name="silence_expire"),
    path("channels/", views.NotificationChannelListView.as_view(), name="channels"),
]
