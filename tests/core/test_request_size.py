"""RequestSizeLimitMiddleware answers only once it has read the body, whatever the answer.

A WSGI server that answers with the body unread drops the connection (gunicorn reads at most
64 KiB of what is left); tests/integration/test_nginx_bodies.py shows what that does through
nginx. Here: that the body was read to its end.
"""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory

from apps.core.middleware import DRAIN_MAX_BYTES, RequestSizeLimitMiddleware

LIMIT = 1024


def unread(request: HttpRequest) -> int:
    return len(request.META["wsgi.input"])


@pytest.fixture(autouse=True)
def small_limit(settings: object) -> None:
    settings.MOC_MAX_REQUEST_BYTES = LIMIT


def test_a_body_over_the_limit_is_read_before_the_413() -> None:
    request = RequestFactory().post("/api/v1/jobs/", data=b"x" * (LIMIT * 5), content_type="application/json")

    response = RequestSizeLimitMiddleware(lambda _: HttpResponse())(request)

    assert response.status_code == 413
    assert unread(request) == 0


def test_a_body_a_view_answered_without_reading_is_read_before_the_answer() -> None:
    request = RequestFactory().post("/api/v1/jobs/", data=b"x" * LIMIT, content_type="application/json")

    response = RequestSizeLimitMiddleware(lambda _: JsonResponse({"error": "not_authenticated"}, status=401))(
        request
    )

    assert response.status_code == 401
    assert unread(request) == 0


def test_a_body_the_view_read_is_left_as_the_view_saw_it() -> None:
    request = RequestFactory().post("/api/v1/jobs/", data=b'{"a": 1}', content_type="application/json")

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(request.body)

    response = RequestSizeLimitMiddleware(view)(request)

    assert response.content == b'{"a": 1}'
    assert request.body == b'{"a": 1}'


def test_a_body_over_the_drain_cap_refused_as_too_large_is_left_for_the_server_to_close() -> None:
    # Reading it would hold a thread for as long as the client takes to send it.
    size = DRAIN_MAX_BYTES + 1
    request = RequestFactory().post("/api/v1/jobs/", data=b"x" * size, content_type="application/json")

    response = RequestSizeLimitMiddleware(lambda _: JsonResponse({"error": "not_authenticated"}, status=401))(
        request
    )

    assert response.status_code == 413
    assert unread(request) == size


def test_a_body_over_the_drain_cap_on_an_upload_path_answered_early_is_not_read(settings: object) -> None:
    settings.MOC_UPLOAD_PATHS = {"/api/v1/datasets/": DRAIN_MAX_BYTES * 2}
    size = DRAIN_MAX_BYTES + 1
    request = RequestFactory().post("/api/v1/datasets/", data=b"x" * size, content_type="application/json")

    response = RequestSizeLimitMiddleware(lambda _: JsonResponse({"error": "not_authenticated"}, status=401))(
        request
    )

    assert response.status_code == 401
    assert unread(request) == size
