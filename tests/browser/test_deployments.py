"""A deployment's page in a real browser: a published release change redraws the live part without a
reload, the charts draw, the page fits a 390 px screen, and a history range draws the stored
minutes beside the anomaly badge."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from apps.core import events as core_events
from apps.core.domain.roles import Role
from apps.deployments import events, rollup
from apps.deployments.domain.states import ReleaseState
from apps.deployments.models import Release, ServingMinute
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


def test_a_history_range_draws_the_stored_minutes_and_the_badge_names_what_moved(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    stable = canary_under_way().previous_release
    assert stable is not None
    end = rollup.last_complete_minute_end(time.time())
    for i in range(1, 66):  # p99 about 40 ms for an hour, then 400 ms
        ServingMinute.objects.create(
            deployment=stable.deployment,
            release=stable,
            version=stable.model_version,
            minute=datetime.fromtimestamp(end - 60 * i, tz=UTC),
            ok=60,
            requests=60,
            latency_p99_ms=400.0 if i <= 5 else 40.0 + i % 3,
        )
    log_in(page, asgi_server, make_user, Role.VIEWER, stable.deployment.get_absolute_url())
    expect(page.locator("#serving-anomalies [data-figure='p99_ms']")).to_be_visible(timeout=10_000)

    page.get_by_role("button", name="1 h").click()

    expect(page.get_by_role("button", name="1 h")).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-metric=p99]');"
        " return el.data && el.data.length === 1 && el.data[0].y.length >= 50; }",
        timeout=10_000,
    )
    assert max(page.evaluate("document.querySelector('[data-metric=p99]').data[0].y")) == 400
