from django.urls import path

from apps.models import views

app_name = "models"

urlpatterns = [
    path("", views.ModelListView.as_view(), name="list"),
    path("<int:pk>/", views.ModelDetailView.as_view(), name="detail"),
    path("versions/<int:pk>/", views.VersionDetailView.as_view(), name="version"),
]
