"""`ApiError`: every refusal the OpenAI-compatible API answers, in OpenAI's error shape.

OpenAI clients read an error body `{"error": {"message", "type", "param", "code"}}` and pick the
exception they raise by the HTTP status (the SDK's BadRequestError, RateLimitError, ...); `type`
names the kind of failure, `param` the request field at fault, `code` the precise reason
("bulkhead_full", "worker_silent").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# OpenAI's error type for each status; any other 4xx is the caller's request, any other 5xx ours.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout",
}


def type_for(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    return TYPES.get(status) or ("invalid_request_error" if status < 500 else "server_error")


@dataclass
class ApiError(Exception):
    """A request the API refuses: the HTTP status and OpenAI's error fields. `type` defaults to
    the status's; `retry_after_s` becomes the Retry-After header."""

    status: int
    message: str
    type: str = ""
    param: str | None = None
    code: str | None = None
    retry_after_s: int | None = None

    def __post_init__(self) -> None:
        if not self.type:
            self.type = type_for(self.status)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(param: str | None, message: str) -> ApiError:
    """A 400 for a request that breaks the API's rules, naming the parameter at fault."""
    return ApiError(400, message, param=param)


def refused(status: int, reason: str, error_class: str, retry_after_s: int | None, field: str) -> ApiError:
    """The error for an inference request MOC refused (the serving flow's `Refused`, by its values:
    this module stays free of the serving app)."""
    return ApiError(
        status, reason, param=field or None, code=error_class or None, retry_after_s=retry_after_s
    )
