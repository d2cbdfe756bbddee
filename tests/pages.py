"""Reading pages as a browser shows them."""

from __future__ import annotations

import html
import re
from typing import Any

from django.test import Client

_SLOT = re.compile(r'<div class="section-slot" data-section="[^"]*" hx-get="([^"]*)"[^>]*>.*?</div>', re.S)


def with_sections(client: Client, url: str, params: dict[str, Any] | None = None) -> str:
    """The page at `url` once htmx filled its sections (apps.core.sections) from their own URLs,
    as a browser does when the page loads: each asked with htmx's headers, the page's address
    among them."""
    response = client.get(url, params or {})
    assert response.status_code == 200, response.status_code
    page = response.content.decode()
    here = f"http://testserver{response.request['PATH_INFO']}"

    def fill(slot: re.Match[str]) -> str:
        section = client.get(
            html.unescape(slot.group(1)), headers={"HX-Request": "true", "HX-Current-URL": here}
        )
        assert section.status_code == 200, (slot.group(1), section.status_code)
        content = section.content.decode()
        # htmx would take an out-of-band element out of the section, to swap it into an element
        # of the page with its id, which a section's own first content cannot have yet.
        assert "hx-swap-oob" not in content, f"{slot.group(1)} answers out-of-band content"
        return content

    return _SLOT.sub(fill, page)
