from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_logs_in_and_sees_the_live_overview(page: Page, asgi_server, make_user, tmp_path):
    make_user(username="olga")  # viewer role; password from the fixture

    page.goto(f"{asgi_server}/")
    expect(page).to_have_url(f"{asgi_server}/accounts/login/?next=/")
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("navigation", name="Sections").get_by_role("link", name="GPUs")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
    expect(page.locator("#events")).to_contain_text("login")
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
