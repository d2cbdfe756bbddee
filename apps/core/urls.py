from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import path
from django.utils.functional import lazy
from django.views.generic import RedirectView

from apps.core import views

app_name = "core"

urlpatterns = [
    path("audit/", views.AuditListView.as_view(), name="audit"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<str:prefix>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    # Browsers ask for /favicon.ico whatever the page links; the icon is static/favicon.svg,
    # whose address is known only once the static files' storage is (hence lazy).
    path(
        "favicon.ico",
        login_not_required(RedirectView.as_view(url=lazy(static, str)("favicon.svg"))),
        name="favicon",
    ),
]
