"""A deployment's page in a real browser: a published release change redraws the live part without a
reload, the charts draw, and the page fits a 390 px screen."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from apps.core import events as core_events
from apps.core.domain.roles import Role
from apps.deployments import events
from apps.deployments.domain.states import ReleaseState
from apps.deployments.models import Release
from tests.browser.test_operator_pages import PHONE, log_in
from tests.deployments.factories import ReleaseFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def canary_under_way() -> Release:
    stable = ReleaseFactory(
        deployment__name="chat-with-a-rather-long-name-0123456789",
        state=ReleaseState.PROMOTED,
        traffic_percent=90,
    )
    deployment = stable.deployment
    deployment.current_release = stable
    deployment.save()
    return ReleaseFactory(
        deployment=deployment,
        model_version__model=stable.model_version.model,
        state=ReleaseState.PROGRESSING,
        strategy="canary",
        steps=[10, 50, 100],
        traffic_percent=10,
        previous_release=stable,
        reason="step 1 of 3 under way with a reason long enough to wrap on a phone",
    )


def test_a_paused_release_shows_without_a_reload_and_the_page_fits_a_phone(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    canary = canary_under_way()
    page.set_viewport_size(PHONE)
    log_in(page, asgi_server, make_user, Role.OPERATOR, canary.deployment.get_absolute_url())
    expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
    expect(page.locator("#deployment-charts .main-svg").first).to_be_attached(timeout=10_000)
    expect(page.get_by_role("button", name="Pause")).to_be_visible()

    Release.objects.filter(pk=canary.pk).update(state=ReleaseState.PAUSED, resume_to=ReleaseState.PROGRESSING)
    core_events.publish(
        events.deployment_group(canary.deployment.name), "release.changed", {"release": canary.pk}
    )

    expect(page.locator(f"#release-{canary.pk} .badge")).to_have_text("Paused", timeout=10_000)
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert page.evaluate("window.loadedOnce") is True
    widths = page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth,
            wider: Array.from(document.querySelectorAll("body *"))
                .filter(e => !e.closest("table") && e.getBoundingClientRect().right > innerWidth + 1)
                .map(e => e.tagName + "." + e.className),
        })"""
    )
    assert widths["page"] <= PHONE["width"], widths
