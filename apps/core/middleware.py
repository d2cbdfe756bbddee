from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from apps.core import audit, metrics, roles


class RequestSizeLimitMiddleware:
    """Refuse bodies over MOC_MAX_REQUEST_BYTES with a 413 before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return JsonResponse(
                {"error": "bad_request", "detail": "Content-Length is not a number.", "fields": {}},
                status=400,
            )
        if length > settings.MOC_MAX_REQUEST_BYTES:
            return JsonResponse(
                {
                    "error": "request_too_large",
                    "detail": f"The body is {length} bytes; the limit is {settings.MOC_MAX_REQUEST_BYTES}.",
                    "fields": {},
                },
                status=413,
            )
        return self.get_response(request)


class AuditContextMiddleware:
    """Makes the request visible to audit recording for the duration of the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = audit.bind_request(request)
        try:
            return self.get_response(request)
        finally:
            audit.unbind_request(token)


class MetricsMiddleware:
    """Counts requests and their latency by route (not by raw path, to bound label cardinality)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        metrics.observe_request(
            request.method or "GET", route, response.status_code, time.perf_counter() - start
        )
        return response


class RoleRequiredMiddleware:
    """Pages need a role, not only a login: an account nobody has given a role sees nothing yet.

    Views marked login_not_required (login, health, the API, which checks roles itself) and
    the admin site (which checks its own) are left alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., HttpResponse], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if not getattr(view_func, "login_required", True) or request.path.startswith("/admin/"):
            return None
        user = request.user
        if user.is_authenticated and roles.role_of(user) is None:
            return render(request, "core/no_role.html", {"section": ""}, status=403)
        return None
