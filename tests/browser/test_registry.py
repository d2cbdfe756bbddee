"""The registry's pages in a real browser: an operator presses Scan now, a real worker walks a
model root holding one small safetensors file, and the model appears, checked and described."""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from apps.core.domain.roles import Role
from tests.integration.conftest import start_worker  # noqa: F401  (the same worker fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def write_safetensors(path: Path) -> None:
    """A valid two-tensor safetensors file: an 8-byte header length, the JSON header, the data."""
    header = {
        "__metadata__": {"format": "pt"},
        "embed.weight": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
        "head.bias": {"dtype": "F32", "shape": [4], "data_offsets": [32, 48]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    data = struct.pack("<12f", *[i / 10 for i in range(12)])
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.fixture
def model_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: object) -> Path:
    """A model root with one small file, named in the environment that the server and the
    worker (started after this fixture) inherit."""
    root = tmp_path / "model-root"
    root.mkdir()
    write_safetensors(root / "tiny-net.safetensors")
    monkeypatch.setenv("MOC_MODEL_ROOTS", str(root))
    settings.MOC_MODEL_ROOTS = [str(root)]
    return root


def test_an_operator_presses_scan_now_and_sees_the_model_found_and_validated(
    page: Page,
    model_root: Path,
    asgi_server: str,
    start_worker: Callable[..., object],  # noqa: F811
    make_user: Callable[..., object],
    tmp_path: Path,
) -> None:
    # given: a worker for the scan and an operator on the (empty) models page
    start_worker()
    make_user(Role.OPERATOR, "otto")
    page.goto(f"{asgi_server}/accounts/login/?next={reverse('models:list')}")
    page.get_by_label("Username").fill("otto")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    expect(page.locator(".empty")).to_contain_text(str(model_root))

    # when
    page.get_by_role("button", name="Scan now").first.click()

    # then: the scan page follows the scan by itself until it is done
    expect(page).to_have_url(re.compile(rf"{asgi_server}/models/scans/\d+/$"))
    expect(page.locator("#scan-state")).to_have_text("Succeeded", timeout=60_000)
    expect(page.locator(".scan-counts")).to_contain_text("New")
    page.get_by_role("link", name="See the models →").click()
    row = page.get_by_role("row", name="tiny-net")
    expect(row).to_contain_text("Safetensors")
    expect(row).to_contain_text("v1")

    # The validation task runs after the scan; the page shows its verdict on a reload.
    deadline = time.monotonic() + 30
    while "Valid" not in row.inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(row).to_contain_text("Valid")
    row.get_by_role("link", name="v1").click()
    expect(page.locator("table.report")).to_contain_text("pass")
    expect(page.locator("table.vram")).to_contain_text("Weights")
    page.screenshot(path=str(tmp_path / "version.png"), full_page=True)
