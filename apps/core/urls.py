from django.urls import path

from apps.core import views

app_name = "core"

urlpatterns = [
    path("audit/", views.AuditListView.as_view(), name="audit"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<str:prefix>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
