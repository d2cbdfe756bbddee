from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.shortcuts import render

from apps.core import audit, metrics, roles


class RequestSizeLimitMiddleware:
    """Refuse bodies over MOC_MAX_REQUEST_BYTES (over their own limit on MOC_UPLOAD_PATHS) with a 413
    before anything parses them, and answer only once the body has been read.

    A WSGI server that answers while the client is still sending must drop the connection
    with the rest unread (gunicorn reads at most 64 KiB of it to keep a connection alive),
    and the client, or nginx in front, sees a reset instead of the answer: nginx turns it
    into a 502. So whatever a view left of the body (an early 401 or 404, or the 413 here)
    is read and discarded first, and the connection stays usable: up to DRAIN_MAX_BYTES of
    it. Past that, or for a response marked `leave_body_unread` (an upload refused before
    its body was looked at: apps/core/upload_gate.py), nothing more is read: a client that
    trickles its body must not hold a thread, so the server reads its own small amount and
    closes the connection instead (gunicorn: 64 KiB).
    """

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
        limit = body_limit(request.path_info)
        if length > limit:
            _drain(request, length)
            return JsonResponse(
                {
                    "error": "request_too_large",
                    "detail": f"The body is {length} bytes; the limit is {limit}.",
                    "fields": {},
                },
                status=413,
            )
        response = self.get_response(request)
        if not getattr(response, LEAVE_BODY_UNREAD, False):
            _drain(request, length)
        return response


def body_limit(path: str) -> int:
    """The most bytes a request to `path` may send: its own limit if it is one of the upload paths
    (exactly; nginx gives the same paths the same limit), else MOC_MAX_REQUEST_BYTES."""
    limit: int = settings.MOC_UPLOAD_PATHS.get(path, settings.MOC_MAX_REQUEST_BYTES)
    return limit


# Past this, reading a body only to throw it away holds a thread for as long as the client takes
# to send it; the connection is closed instead (nginx refuses bodies over the limits itself:
# deploy/nginx, and reads no more than client_body_timeout allows between two reads).
DRAIN_MAX_BYTES = 4 * 1024 * 1024
LEAVE_BODY_UNREAD = "moc_leave_body_unread"


def leave_body_unread(response: HttpResponse) -> HttpResponse:
    """Mark `response` as one whose request body nothing reads: the server closes the connection."""
    setattr(response, LEAVE_BODY_UNREAD, True)
    return response


def _drain(request: HttpRequest, length: int) -> None:
    """Read and discard what is left of a WSGI request's body of `length` bytes, when that is at most
    DRAIN_MAX_BYTES (under ASGI, Django has read it all before the view runs)."""
    if not isinstance(request, WSGIRequest) or length > DRAIN_MAX_BYTES:
        return
    # A client that went away mid-body has no connection left to keep.
    with contextlib.suppress(UnreadablePostError):
        while request.read(64 * 1024):
            pass


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
