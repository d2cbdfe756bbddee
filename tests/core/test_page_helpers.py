"""The pages' shared helpers: where a button goes back to, which list a page shows, and the live
envelope encoded once."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from apps.core import events
from apps.core.pages import back_url, filters_given

FALLBACK = "/fallback/"


@pytest.mark.parametrize(
    ("target", "secure", "expected"),
    [
        ("/alerts/?severity=warning", False, "/alerts/?severity=warning"),
        ("/alerts/?severity=warning", True, "/alerts/?severity=warning"),
        ("http://testserver/alerts/", False, "http://testserver/alerts/"),
        ("https://testserver/alerts/", True, "https://testserver/alerts/"),
        ("http://testserver/alerts/", True, FALLBACK),  # from an HTTPS page, never back over HTTP
        ("https://evil.example/", False, FALLBACK),
        ("//evil.example/", False, FALLBACK),
        ("", False, FALLBACK),
    ],
)
def test_back_url_goes_only_to_a_page_of_this_site(target: str, secure: bool, expected: str) -> None:
    request = RequestFactory().post("/x/", {"next": target}, secure=secure)

    assert back_url(request, FALLBACK) == expected


@pytest.mark.parametrize(
    ("query", "given"),
    [({}, False), ({"page": "2"}, False), ({"state": ""}, False), ({"state": "firing", "page": "2"}, True)],
)
def test_a_page_number_is_not_a_filter(query: dict[str, str], given: bool) -> None:
    assert filters_given(RequestFactory().get("/x/", query)) is given


def test_the_envelope_is_compact_json_with_the_type_and_payload() -> None:
    text = events.encode("alerts.changed", {"firing": 2, "new": []})

    assert text == '{"type":"alerts.changed","payload":{"firing":2,"new":[]}}'
    assert json.loads(text) == {"type": "alerts.changed", "payload": {"firing": 2, "new": []}}
