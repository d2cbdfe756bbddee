"""Throttles: anonymous callers by address, people by user, programs by API key."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from apps.core import audit
from apps.core.models import ApiKey


class AnonThrottle(AnonRateThrottle):
    scope = "anon"

    def get_ident(self, request: Request) -> str:
        # DRF's default believes any X-Forwarded-For, so a caller could pick a fresh ident per request.
        return audit.client_ip(request) or ""


class UserThrottle(UserRateThrottle):
    """Session users; keyed clients are counted by ApiKeyThrottle instead."""

    scope = "user"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiKey):
            return None
        return super().get_cache_key(request, view)


class ApiKeyThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
