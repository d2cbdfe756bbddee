from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.core import views as core_views
from moc_site import views as site_views

urlpatterns = [
    path("", site_views.overview, name="overview"),
    path("", include("apps.core.urls")),
    path("fleet/", include("apps.fleet.urls")),
    path("serving/", include("apps.serving.urls")),
    # The placements page lived under /fleet/ before serving was its own app: old links still land.
    path(
        "fleet/placements/",
        RedirectView.as_view(pattern_name="serving:placements", permanent=True, query_string=True),
    ),
    path("models/", include("apps.models.urls")),
    path("jobs/", include("apps.jobs.urls")),
    path("deployments/", include("apps.deployments.urls")),
    path("goals/", include("apps.goals.urls")),
    path("alerts/", include("apps.alerts.urls")),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="core/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("moc_site.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="swagger-ui"),
    path(
        "api/redoc/",
        login_required(SpectacularRedocView.as_view(url_name="schema", template_name="core/redoc.html")),
        name="redoc",
    ),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", site_views.metrics_view, name="metrics"),
]

handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
