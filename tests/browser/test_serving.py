"""The GPUs page in a real browser: its placement lists follow the database by polling (htmx),
without a reload."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from apps.fleet.domain.kinds import Backend
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.fleet.factories import DeviceFactory, NodeFactory
from tests.serving.factories import PlacementFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_gpus_page_shows_a_placement_changing_state_without_reloading(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    device = DeviceFactory(node=NodeFactory(name="gpu-box-1", backend=Backend.SIM), simulated=True)
    placement = PlacementFactory(device=device, state=PlacementState.LOADING, version__model__name="llama")
    make_user(username="olga")
    page.goto(f"{asgi_server}/accounts/login/?next={reverse('fleet:devices')}")
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    state = page.locator(
        f'#placements-device-{device.pk} tr[data-placement="{placement.pk}"] [data-fig="state"]'
    )
    expect(state).to_have_text("Loading")
    page.evaluate("window.loadedOnce = true")

    Placement.objects.filter(pk=placement.pk).update(state=PlacementState.LOADED)

    expect(state).to_have_text("Loaded", timeout=10_000)
    assert page.evaluate("window.loadedOnce") is True
