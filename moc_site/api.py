"""The /api/v1/ URLs: every app registers its viewsets through its api/urls.py `register()`
and may add plain views in that module's `urlpatterns`."""

from importlib import import_module

from django.conf import settings
from rest_framework.routers import DefaultRouter

router = DefaultRouter()
urlpatterns = []
for _app in settings.MOC_APPS:
    _module = import_module(f"apps.{_app}.api.urls")
    _module.register(router)
    urlpatterns += getattr(_module, "urlpatterns", [])
urlpatterns += router.urls
