from django.urls import path

from apps.alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.AlertListView.as_view(), name="list"),
    path("<int:pk>/", views.AlertDetailView.as_view(), name="detail"),
    path("<int:pk>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("<int:pk>/unacknowledge/", views.alert_unacknowledge, name="unacknowledge"),
    path("history/", views.history, name="history"),
    path("rules/", views.AlertRuleListView.as_view(), name="rules"),
    path("rules/new/", views.rule_create, name="rule_create"),
    path("rules/label-values/", views.label_values, name="label_values"),
    path("rules/<int:pk>/", views.AlertRuleDetailView.as_view(), name="rule_detail"),
    path("rules/<int:pk>/edit/", views.rule_edit, name="rule_edit"),
    path("silences/", views.SilenceListView.as_view(), name="silences"),
    path("silences/<int:pk>/expire/", views.silence_expire, name="silence_expire"),
    path("channels/", views.NotificationChannelListView.as_view(), name="channels"),
    path("channels/<int:pk>/", views.NotificationChannelDetailView.as_view(), name="channel_detail"),
    path("channels/<int:pk>/test/", views.channel_test, name="channel_test"),
]
