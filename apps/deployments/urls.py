from django.urls import path

from apps.deployments import views

app_name = "deployments"

urlpatterns = [
    path("", views.DeploymentListView.as_view(), name="list"),
    path("releases/<int:pk>/<slug:action>/", views.release_action, name="release_action"),
    path("<slug:name>/", views.deployment_detail, name="detail"),
    path("<slug:name>/settings/", views.deployment_settings, name="settings"),
    path("<slug:name>/release/", views.release_create, name="release"),
]
