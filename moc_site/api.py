"""The /api/v1/ URLs: every app registers its viewsets through its api/urls.py `register()`
and may add plain views in that module's `urlpatterns`."""

from importlib import import_module

from rest_framework.routers import DefaultRouter

APPS = ["core", "fleet", "models", "jobs", "deployments", "goals", "alerts"]

router = DefaultRouter()
urlpatterns = []
for _app in APPS:
    _module = import_module(f"apps.{_app}.api.urls")
    _module.register(router)
    urlpatterns += getattr(_module, "urlpatterns", [])
urlpatterns += router.urls
