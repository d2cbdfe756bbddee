"""What an operator sees, in a real browser: retired devices out of the way and not counted, live
values that follow the database without a reload (reserved memory, a finished job's buttons, a new
validation report), and tables that scroll inside their box on a phone-sized screen."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps.core.domain.roles import Role
from apps.fleet import telemetry
from apps.fleet.domain.kinds import Backend
from apps.fleet.domain.states import DeviceHealth
from apps.fleet.models import Device, Node
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.integration.conftest import start_worker  # noqa: F401  (the same worker fixture)
from tests.jobs.factories import JobEventFactory, JobFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def log_in(page: Page, server: str, make_user: Callable[..., object], role: Role, url: str) -> Page:
    """A fresh user of `role` logged in and on `url`, with a marker set that a reload would lose."""
    make_user(role, "olga")
    page.goto(f"{server}/accounts/login/?next={url}")
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server}{url}")
    page.evaluate("window.loadedOnce = true")
    return page


def sim_node_with_retired_cpu() -> tuple[Node, Device, Device]:
    """A node that ran on its CPU, then restarted with a simulated GPU (MOC_DEVICES=sim:...)."""
    node = NodeFactory(name="box-1", backend=Backend.SIM)
    cpu = DeviceFactory(
        node=node,
        kind="cpu",
        index=0,
        name="AMD EPYC (host memory)",
        health=DeviceHealth.UNAVAILABLE,
        retired_at=timezone.now() - timedelta(minutes=5),
    )
    gpu = DeviceFactory(
        node=node, index=0, simulated=True, name="Simulated GPU 24 GiB", memory_total_bytes=24 * GIB
    )
    return node, cpu, gpu


def publish_gpu(node: Node, gpu: Device) -> None:
    """The node's telemetry as its agent sends it: only what the node offers."""
    reading = {
        "id": gpu.pk,
        "index": gpu.index,
        "uuid": gpu.uuid,
        "name": gpu.name,
        "kind": gpu.kind,
        "simulated": True,
        "health": "healthy",
        "error": "",
        "gpu_util": 10.0,
        "mem_util": None,
        "mem_total_bytes": gpu.memory_total_bytes,
        "mem_used_bytes": 2 * GIB,
        "mem_free_bytes": gpu.memory_total_bytes - 2 * GIB,
        "temperature_c": 40.0,
        "power_w": 100.0,
        "power_limit_w": 300.0,
    }
    message = telemetry.telemetry_message(
        node=node.name, node_id=node.pk, at=time.time(), backend=node.backend, devices=[reading]
    )
    telemetry.publish(redis.Redis.from_url(settings.REDIS_URL), message)


# --- retired devices


def test_the_overview_does_not_count_a_retired_device(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    node, _, gpu = sim_node_with_retired_cpu()
    publish_gpu(node, gpu)

    log_in(page, asgi_server, make_user, Role.VIEWER, reverse("overview"))

    expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
    gpus_card = page.locator("a.card.stat", has_text="GPUs").first
    expect(gpus_card.locator(".stat-value")).to_have_text("1")
    expect(gpus_card).not_to_contain_text("CPU")
    expect(page.locator('#fleet-totals [data-total="devices"]')).to_have_text("1")
    expect(page.locator('#fleet-totals [data-total="memory-of"]')).to_contain_text("of 24.0\u00a0GiB")


def test_the_gpus_page_keeps_a_retired_device_folded_away_without_a_load_form(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    _, cpu, gpu = sim_node_with_retired_cpu()
    ModelVersionFactory(validation_state=ValidationState.VALID, kind="causal-lm", format=ModelFormat.HF)

    log_in(page, asgi_server, make_user, Role.OPERATOR, reverse("fleet:devices"))

    expect(page.locator(f'tr[data-device="{gpu.pk}"]')).to_be_visible()
    expect(page.locator(f'tr[data-device="{cpu.pk}"]')).to_have_count(0)
    expect(page.locator(f'[data-serving-device="{gpu.pk}"] .load-form')).to_be_visible()
    expect(page.locator(f'[data-serving-device="{cpu.pk}"]')).to_have_count(0)
    expect(page.locator(".load-form")).to_have_count(1)
    retired = page.locator(f'[data-retired-device="{cpu.pk}"]')
    expect(retired).to_be_hidden()  # folded away until asked for
    page.locator("[data-retired-devices] summary").click()
    expect(retired).to_be_visible()
    expect(retired).to_contain_text("CPU 0")


# --- live values


def test_a_device_rows_reserved_memory_follows_a_new_placement_without_a_reload(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    device = DeviceFactory(node=NodeFactory(name="box-1", backend=Backend.SIM), simulated=True)
    log_in(page, asgi_server, make_user, Role.VIEWER, reverse("fleet:devices"))
    reserved = page.locator(f'tr[data-device="{device.pk}"] [data-reserved="{device.pk}"]')
    expect(reserved).to_have_text("0\u00a0B")

    placement = PlacementFactory(device=device, state=PlacementState.LOADED, reserved_bytes=5 * GIB)

    expect(reserved).to_have_text("5.0\u00a0GiB", timeout=10_000)
    bar = page.locator(f'tr[data-device="{device.pk}"] [data-membar] [data-seg="placement"]')
    expect(bar).to_have_count(1)
    expect(bar).to_have_attribute("href", placement.version.get_absolute_url())
    assert page.evaluate("window.loadedOnce") is True


def test_a_finished_job_loses_its_cancel_button_without_a_reload(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    job = JobFactory(state=JobState.RUNNING)
    log_in(page, asgi_server, make_user, Role.OPERATOR, job.get_absolute_url())
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible()

    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED, progress=1.0, finished_at=timezone.now())

    expect(page.locator("#job-live .badge").first).to_have_text("Succeeded", timeout=10_000)
    expect(cancel).to_have_count(0)
    assert page.evaluate("window.loadedOnce") is True


def test_validate_again_shows_the_new_report_without_a_reload(
    page: Page,
    asgi_server: str,
    start_worker: Callable[..., object],  # noqa: F811
    make_user: Callable[..., object],
) -> None:
    # given: a version whose files are gone from disk, never checked, and a worker to check it
    start_worker()
    version = ModelVersionFactory(path="/nonexistent/moc/tiny-net", validation_state=ValidationState.PENDING)
    log_in(page, asgi_server, make_user, Role.OPERATOR, version.get_absolute_url())
    expect(page.locator("#validation-live")).to_contain_text("No report yet")

    # when
    page.get_by_role("button", name="Validate again").click()

    # then: the worker's report and verdict appear in place
    expect(page.locator("#validation-live table.report")).to_contain_text("files_present", timeout=30_000)
    expect(page.locator("#validation-badge")).to_have_text("Invalid")
    expect(page.locator("#validation-problems")).to_contain_text("no files are left")
    assert page.evaluate("window.loadedOnce") is True


# --- a phone-sized screen


PAGES = {
    "placements": lambda p, j: reverse("serving:placements"),
    "models": lambda p, j: reverse("models:list"),
    "jobs": lambda p, j: reverse("jobs:list"),
    "gpus": lambda p, j: reverse("fleet:devices"),
    "version": lambda p, j: p.version.get_absolute_url(),
    "device": lambda p, j: p.device.get_absolute_url(),
    "job": lambda p, j: j.get_absolute_url(),
}


@pytest.mark.parametrize("name", PAGES)
def test_a_wide_table_scrolls_inside_its_box_on_a_390px_screen(
    page: Page, asgi_server: str, make_user: Callable[..., object], name: str
) -> None:
    long_name = "a-node-with-a-rather-long-name-0123456789"
    placement = PlacementFactory(
        state=PlacementState.LOADED,
        device__node__name=long_name,
        version__path=f"/srv/models/{long_name}/{long_name}/weights",
        version__validation_report=[
            {"check": "header_size", "status": "pass", "detail": "fine", "file": f"{long_name}.safetensors"}
        ],
    )
    job = JobFactory(state=JobState.RUNNING, queue=f"gpu.{long_name}.0", params={"note": long_name * 3})
    JobEventFactory(job=job, message=f"started on {long_name} with a message long enough to widen")
    page.set_viewport_size(PHONE)

    log_in(page, asgi_server, make_user, Role.OPERATOR, PAGES[name](placement, job))

    expect(page.locator("table.table").first).to_be_attached()
    widths = page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth,
            tables: Array.from(document.querySelectorAll("table.table"))
                .map(t => ({
                    box: t.clientWidth, content: t.scrollWidth, overflow: getComputedStyle(t).overflowX,
                })),
            wider: Array.from(document.querySelectorAll("body *"))
                .filter(e => !e.closest("table") && e.getBoundingClientRect().right > innerWidth + 1)
                .map(e => e.tagName + "." + e.className),
        })"""
    )
    assert widths["page"] <= PHONE["width"], widths  # the page does not scroll sideways
    # A table wider than the screen scrolls inside its own box.
    assert all(t["overflow"] == "auto" for t in widths["tables"] if t["content"] > t["box"]), widths
    if name in ("placements", "models", "jobs", "gpus"):
        assert any(t["content"] > t["box"] for t in widths["tables"]), widths
