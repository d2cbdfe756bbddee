from django.urls import path

from apps.models import views

app_name = "models"

urlpatterns = [
    path("", views.ModelListView.as_view(), name="list"),
    path("<int:pk>/", views.ModelDetailView.as_view(), name="detail"),
    path("<int:pk>/archive/", views.model_archive, name="archive"),
    path("<int:pk>/restore/", views.model_restore, name="restore"),
    path("<int:pk>/aliases/", views.alias_set, name="alias_set"),
    path("<int:pk>/aliases/<str:name>/clear/", views.alias_clear, name="alias_clear"),
    path("versions/<int:pk>/", views.VersionDetailView.as_view(), name="version"),
    path("versions/<int:pk>/validate/", views.version_validate, name="validate"),
    path("versions/<int:pk>/archive/", views.version_archive, name="version_archive"),
    path("versions/<int:pk>/restore/", views.version_restore, name="version_restore"),
    path("versions/<int:pk>/move/", views.version_move, name="version_move"),
    path("scans/", views.ScanListView.as_view(), name="scans"),
    path("scans/new/", views.scan_now, name="scan_now"),
    path("scans/<int:pk>/", views.scan_detail, name="scan"),
]
