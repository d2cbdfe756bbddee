"""File uploads may send more than MOC_MAX_REQUEST_BYTES, on their own paths only (MOC_UPLOAD_PATHS).

The limits are the project's own settings here, not shrunk ones: a 3 MiB dataset passes on the upload
paths and is refused everywhere else. tests/integration/test_nginx_uploads.py sends the same through nginx.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory
from django.urls import resolve

from apps.core.middleware import RequestSizeLimitMiddleware

MiB = 1024 * 1024
DATASET_PATHS = ["/api/v1/datasets/", "/jobs/datasets/upload/"]


def file_size_view(request: HttpRequest) -> HttpResponse:
    """Answers with the size of the uploaded file it parsed."""
    return JsonResponse({"size": request.FILES["file"].size})


def multipart(path: str, size: int) -> HttpRequest:
    rows = b'{"text": "a row of a dataset"}\n'
    data = (rows * (size // len(rows) + 1))[:size]
    return RequestFactory().post(path, {"file": SimpleUploadedFile("big.jsonl", data), "name": "big"})


def unread(request: HttpRequest) -> int:
    return len(request.META["wsgi.input"])


def test_the_dataset_upload_paths_take_the_dataset_limit_and_the_envelope() -> None:
    limit = settings.MOC_DATASET_UPLOAD_MAX_BYTES + settings.MOC_UPLOAD_ENVELOPE_BYTES

    assert {path: settings.MOC_UPLOAD_PATHS.get(path) for path in DATASET_PATHS} == dict.fromkeys(
        DATASET_PATHS, limit
    )
    assert settings.MOC_MAX_REQUEST_BYTES < 3 * MiB < limit


@pytest.mark.parametrize("path", sorted(settings.MOC_UPLOAD_PATHS))
def test_each_upload_path_is_a_route(path: str) -> None:
    # The middleware and nginx match the path exactly: a route that moved would silently lose it.
    assert resolve(path).url_name in {"dataset-list", "dataset_upload"}


@pytest.mark.parametrize("path", DATASET_PATHS)
def test_a_3_mib_multipart_upload_on_a_dataset_path_reaches_the_view(path: str) -> None:
    request = multipart(path, 3 * MiB)

    response = RequestSizeLimitMiddleware(file_size_view)(request)

    assert response.status_code == 200
    assert response.content == b'{"size": 3145728}'


@pytest.mark.parametrize(
    "path", ["/api/v1/jobs/", "/api/v1/datasets/1/", "/jobs/datasets/", "/api/v1/datasets"]
)
def test_a_3_mib_body_elsewhere_is_refused_with_the_request_limit(path: str) -> None:
    request = multipart(path, 3 * MiB)
    length = int(request.META["CONTENT_LENGTH"])

    response = RequestSizeLimitMiddleware(file_size_view)(request)

    assert response.status_code == 413
    assert json.loads(response.content) == {
        "error": "request_too_large",
        "detail": f"The body is {length} bytes; the limit is {settings.MOC_MAX_REQUEST_BYTES}.",
        "fields": {},
    }
    assert unread(request) == 0


def test_an_upload_over_its_own_limit_is_refused_naming_that_limit(settings: Any) -> None:
    settings.MOC_UPLOAD_PATHS = {"/api/v1/datasets/": 2 * MiB + 1000}
    request = multipart("/api/v1/datasets/", 3 * MiB)
    length = int(request.META["CONTENT_LENGTH"])

    response = RequestSizeLimitMiddleware(file_size_view)(request)

    assert response.status_code == 413
    assert (
        json.loads(response.content)["detail"]
        == f"The body is {length} bytes; the limit is {2 * MiB + 1000}."
    )
    assert unread(request) == 0
