"""The GPUs page in a real browser: telemetry published to Redis reaches its charts and
figures through uvicorn's /ws/telemetry/, without a reload."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import Page, expect

from apps.fleet import telemetry
from apps.fleet.domain.kinds import Backend
from apps.fleet.models import Device, Node
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

UTIL_CHART = "[data-chart-devices] [data-metric=gpu_util]"


@pytest.fixture
def fleet() -> tuple[Node, list[Device]]:
    node = NodeFactory(name="gpu-box-1", backend=Backend.SIM)
    devices = [
        DeviceFactory(node=node, index=i, simulated=True, memory_total_bytes=24 * GIB) for i in range(2)
    ]
    return node, devices


@pytest.fixture
def gpus_page(page: Page, asgi_server: str, make_user: Callable[..., object], fleet: Any) -> Page:
    """A viewer logged in on the GPUs page, its socket live, a marker set to catch any reload."""
    make_user(username="olga")
    page.goto(f"{asgi_server}/accounts/login/?next={reverse('fleet:devices')}")
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="GPUs")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
    page.evaluate("window.loadedOnce = true")
    return page


def publish(node: Node, devices: list[Device], util: float) -> None:
    readings = [
        {
            "id": d.pk,
            "index": d.index,
            "uuid": d.uuid,
            "name": d.name,
            "kind": d.kind,
            "simulated": True,
            "health": "healthy",
            "error": "",
            "gpu_util": util,
            "mem_util": None,
            "mem_total_bytes": d.memory_total_bytes,
            "mem_used_bytes": 6 * GIB,
            "mem_free_bytes": d.memory_total_bytes - 6 * GIB,
            "temperature_c": 50.0,
            "power_w": 140.0,
            "power_limit_w": 300.0,
        }
        for d in devices
    ]
    message = telemetry.telemetry_message(
        node=node.name, node_id=node.pk, at=time.time(), backend=node.backend, devices=readings
    )
    telemetry.publish(redis.Redis.from_url(settings.REDIS_URL), message)


def util_points(page: Page) -> int:
    return page.evaluate(f"() => (document.querySelector('{UTIL_CHART}').data || [{{x: []}}])[0].x.length")


def publish_until_shown(page: Page, node: Node, devices: list[Device], util: float, where: str = "") -> None:
    """The relay may still be subscribing when the page first goes live: send until one lands
    (on the figure `where` names, by default the first device's utilisation)."""
    figure = page.locator(where or f'tr[data-device="{devices[0].pk}"] [data-fig="util"]')
    deadline = time.monotonic() + 10
    while True:
        publish(node, devices, util)
        try:
            expect(figure).to_have_text(f"{util:.0f}%", timeout=500)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def test_gpus_page_charts_and_figures_follow_telemetry_without_reloading(gpus_page: Page, fleet: Any) -> None:
    node, devices = fleet

    publish_until_shown(gpus_page, node, devices, util=37.0)
    before = util_points(gpus_page)
    publish(node, devices, util=81.0)

    second = gpus_page.locator(f'tr[data-device="{devices[1].pk}"]')
    expect(second.locator('[data-fig="util"]')).to_have_text("81%")
    expect(second.locator('[data-fig="power"]')).to_have_text("140 / 300 W")
    gpus_page.wait_for_function(f"() => document.querySelector('{UTIL_CHART}').data[0].x.length > {before}")
    assert gpus_page.evaluate(f"() => document.querySelector('{UTIL_CHART}').data.length") == 2
    assert gpus_page.evaluate("window.loadedOnce") is True


def test_gpus_page_rereads_the_snapshot_after_a_gap_in_sequence(gpus_page: Page, fleet: Any) -> None:
    node, devices = fleet
    publish_until_shown(gpus_page, node, devices, util=10.0)
    redis.Redis.from_url(settings.REDIS_URL).incr(telemetry.SEQ_KEY_PREFIX + node.name)  # one lost

    with gpus_page.expect_request(lambda r: "/api/v1/telemetry/latest/" in r.url, timeout=10_000):
        publish(node, devices, util=20.0)

    expect(gpus_page.locator(f'tr[data-device="{devices[0].pk}"] [data-fig="util"]')).to_have_text("20%")


def test_gpus_page_greys_a_node_the_moment_it_goes_offline(gpus_page: Page, fleet: Any) -> None:
    node, devices = fleet
    publish_until_shown(gpus_page, node, devices, util=10.0)

    message = telemetry.node_state_message(
        node=node.name, node_id=node.pk, at=time.time(), state="offline", reason="no heartbeat"
    )
    telemetry.publish(redis.Redis.from_url(settings.REDIS_URL), message)

    section = gpus_page.locator('section[data-node-name="gpu-box-1"]')
    expect(section).to_have_class("node offline")
    expect(section.locator("[data-node-state]")).to_have_text("Offline")
    expect(section.locator(f'tr[data-device="{devices[0].pk}"] [data-fig="health"]')).to_have_text(
        "Unavailable"
    )


def test_gpus_page_offers_a_reload_when_an_unknown_device_reports(gpus_page: Page, fleet: Any) -> None:
    node, devices = fleet
    expect(gpus_page.locator("#new-devices")).to_be_hidden()

    late = DeviceFactory(node=node, index=2, simulated=True)
    publish_until_shown(gpus_page, node, [*devices, late], util=10.0)

    expect(gpus_page.locator("#new-devices")).to_be_visible()


def test_overview_fleet_totals_follow_telemetry(gpus_page: Page, asgi_server: str, fleet: Any) -> None:
    node, devices = fleet
    gpus_page.goto(f"{asgi_server}/")
    expect(gpus_page.locator("#live-status")).to_have_text("live", timeout=10_000)

    publish_until_shown(gpus_page, node, devices, util=64.0, where='#fleet-totals [data-total="util"]')

    totals = gpus_page.locator("#fleet-totals")
    expect(totals.locator('[data-total="devices"]')).to_have_text("2")
    expect(totals.locator('[data-total="simulated"]')).to_have_text("2 simulated")
    expect(totals.locator('[data-total="memory"]')).to_have_text("12.0\u00a0GiB")
    expect(totals.locator('[data-total="hottest"]')).to_have_text("50 °C")
