"""Refuse an upload from someone who may not upload before anything reads its body.

The upload paths (MOC_UPLOAD_PATHS) take bodies of tens of MiB. Left to the usual order, Django's
CSRF check reads `request.POST` (parsing the whole multipart body, spooling its files to disk)
before the login or the permission is checked, for anyone who sets a csrftoken cookie. So this
middleware, after AuthenticationMiddleware (which reads the session, never the body) and before
every view hook (CSRF's included), answers a session caller without UPLOAD_PERMISSION at once:
401 when anonymous, 403 otherwise, in the API's error shape.

A request that carries an API key (Authorization or X-API-Key) goes on: DRF authenticates the key
and checks the role before it parses a body, and its session is never consulted.

Nothing of the refused body is read, here or after: the answer is marked `leave_body_unread`, so
RequestSizeLimitMiddleware does not drain it and the server closes the connection instead. (No
`Connection: close` header: it is hop-by-hop, which WSGI forbids an application to send; gunicorn
drops it and Django's own server fails the response on it.)
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.api.errors import body
from apps.core.middleware import leave_body_unread

# Every upload path is a dataset upload today; a path that takes another kind of file would
# need its own permission here.
UPLOAD_PERMISSION = "jobs.add_dataset"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_KEY_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY")


class UploadPermissionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return upload_refusal(request) or self.get_response(request)


def upload_refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer to an upload its session user may not send, or None to let it go on."""
    if request.method in _SAFE_METHODS or request.path_info not in settings.MOC_UPLOAD_PATHS:
        return None
    if any(request.META.get(header) for header in _KEY_HEADERS):
        return None
    user = request.user
    if not user.is_authenticated:
        return leave_body_unread(
            JsonResponse(
                body("not_authenticated", "Authentication credentials were not provided."), status=401
            )
        )
    if not user.has_perm(UPLOAD_PERMISSION):
        return leave_body_unread(
            JsonResponse(
                body("permission_denied", "You do not have permission to upload datasets."), status=403
            )
        )
    return None
