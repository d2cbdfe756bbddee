"""One error body for every API failure: {"error": code, "detail": text, "fields": {field: [messages]}}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from apps.core.dispatch import BROKER_UNREACHABLE
from apps.core.domain.errors import Conflict
from apps.core.domain.statemachine import InvalidTransition

log = logging.getLogger(__name__)

# Redis restarts in seconds; a client retrying sooner than this would only add to the load.
REDIS_RETRY_AFTER_S = 5


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _summary(fields: dict[str, Any]) -> str:
    parts = []
    for name, messages in fields.items():
        first = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(first, dict):
            first = "invalid"
        parts.append(str(first) if name == "non_field_errors" else f"{name}: {first}")
    return "; ".join(parts) or "Invalid input."


def body(code: str, detail: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": code, "detail": detail, "fields": fields or {}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, InvalidTransition):
        set_rollback()
        return Response(body("invalid_transition", str(exc)), status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, Conflict):
        set_rollback()
        return Response(body(exc.code, str(exc)), status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, BROKER_UNREACHABLE):
        # A request that needs Redis right now while it cannot be reached: the caller learns it is
        # the outage, not a bug, and when to retry. Only what says Redis is unreachable: an error
        # Redis answered (a script's bug, WRONGTYPE, out of memory) is a server error, left to
        # Django. Which host Redis is on is logged, not told. Nothing is rolled back here: a
        # request has no transaction of its own (ATOMIC_REQUESTS is off), so a write that needs
        # Redis either reaches it inside its own transaction or goes through the outbox.
        request = context.get("request")
        log.warning("%s: Redis unavailable: %s", getattr(request, "path", "?"), exc)
        return Response(
            body(
                "redis_unavailable",
                "Redis, which MOC needs for this request, cannot be reached right now. "
                f"Try again in {REDIS_RETRY_AFTER_S} s.",
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
        )
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = _flatten(detail)
        payload = body("invalid", _summary(fields), fields)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        payload = body(code, str(exc.detail))
    set_rollback()
    return Response(payload, status=exc.status_code, headers=headers)


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(body("not_found", f"Nothing at {request.path}."), status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(body("server_error", "The server failed; the error was logged."), status=500)
