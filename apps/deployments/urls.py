from django.urls import path

from apps.deployments import views

app_name = "deployments"

urlpatterns = [
    path("", views.DeploymentListView.as_view(), name="list"),
    path("<slug:name>/", views.DeploymentDetailView.as_view(), name="detail"),
]
