"""An upload from someone who may not upload is refused before anything parses its body (review 15b
item 2): an anonymous or viewer session on either upload path, and a viewer's API key.

Whether the body was parsed is seen through Django's own hook for it: an upload handler (listed
first in FILE_UPLOAD_HANDLERS) that records each multipart body a parser starts on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from apps.core.domain.roles import Role
from apps.core.middleware import RequestSizeLimitMiddleware
from apps.core.upload_gate import UploadPermissionMiddleware
from apps.jobs.models import Dataset

pytestmark = pytest.mark.django_db
PATHS = ["/api/v1/datasets/", "/jobs/datasets/upload/"]
ROWS = b'{"text": "a row"}\n' * 2000

parsed: list[str] = []


class RecordingHandler(FileUploadHandler):
    """Records the path of every request whose multipart body a parser starts to read."""

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: Any = None
    ) -> None:
        parsed.append(self.request.path if self.request is not None else "?")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


@pytest.fixture(autouse=True)
def recording(settings: Any, tmp_path: Path) -> Iterator[list[str]]:
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}.RecordingHandler", *settings.FILE_UPLOAD_HANDLERS]
    settings.MOC_DATASET_ROOTS = [str(tmp_path)]
    parsed.clear()
    yield parsed
    parsed.clear()


def form() -> dict[str, Any]:
    return {"file": SimpleUploadedFile("rows.jsonl", ROWS), "name": "rows", "csrfmiddlewaretoken": "x" * 32}


@pytest.mark.parametrize("path", PATHS)
def test_an_anonymous_upload_with_a_self_set_csrf_cookie_is_refused_unparsed(path: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "x" * 32

    response = client.post(path, form())

    assert response.status_code == 401
    assert response.json() == {
        "error": "not_authenticated",
        "detail": "Authentication credentials were not provided.",
        "fields": {},
    }
    assert parsed == []
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("path", PATHS)
def test_a_viewers_session_upload_is_refused_unparsed(path: str, make_user: Callable[..., Any]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(Role.VIEWER))
    client.cookies["csrftoken"] = "x" * 32

    response = client.post(path, form())

    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert parsed == []


def test_a_viewers_api_key_upload_is_refused_by_the_api_unparsed(key_client: Callable[..., Any]) -> None:
    # Header-authenticated requests pass the gate: DRF checks the key's role before it parses a body.
    response = key_client(Role.VIEWER).post(PATHS[0], form(), format="multipart")

    assert response.status_code == 403
    assert parsed == []


def test_an_operators_session_upload_is_parsed_and_registered(make_user: Callable[..., Any]) -> None:
    client = Client()
    client.force_login(make_user(Role.OPERATOR))

    response = client.post(PATHS[0], form())

    assert response.status_code == 201, response.content
    assert parsed == [PATHS[0]]
    assert Dataset.objects.get().rows == 2000


def test_listing_datasets_is_not_gated(make_user: Callable[..., Any]) -> None:
    client = Client()
    client.force_login(make_user(Role.VIEWER))

    assert client.get(PATHS[0]).status_code == 200


def test_the_size_middleware_leaves_a_gated_refusals_body_unread(make_user: Callable[..., Any]) -> None:
    request = RequestFactory().post(PATHS[0], form())
    request.user = make_user(Role.VIEWER)
    stack = RequestSizeLimitMiddleware(UploadPermissionMiddleware(lambda _: HttpResponse(status=201)))

    response = stack(request)

    assert response.status_code == 403
    assert len(request.META["wsgi.input"]) == int(request.META["CONTENT_LENGTH"])


def test_an_ungated_early_answer_is_still_drained() -> None:
    request = RequestFactory().post("/api/v1/jobs/", data=b"x" * 1000, content_type="application/json")

    def refuse(_: HttpRequest) -> HttpResponse:
        return HttpResponse(json.dumps({"error": "not_authenticated"}), status=401)

    assert RequestSizeLimitMiddleware(refuse)(request).status_code == 401
    assert len(request.META["wsgi.input"]) == 0
