import json
import re
from collections.abc import Callable

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.fleet.domain.kinds import Backend
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.jobs.domain.states import JobState
from apps.models.domain.states import ValidationState
from apps.serving.domain.states import PlacementState
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory, TelemetrySampleFactory
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory
from tests.pages import with_sections
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]
PAGES = ["fleet:devices", "serving:placements"]


@pytest.mark.parametrize("url_name", PAGES)
def test_list_page_loads_for_a_viewer(client_as: Client, url_name: str) -> None:
    PlacementFactory()

    assert client_as(Role.VIEWER).get(reverse(url_name)).status_code == 200


@pytest.mark.parametrize("url_name", PAGES)
def test_list_page_sends_anonymous_visitors_to_log_in(client_as: Client, url_name: str) -> None:
    response = client_as(None).get(reverse(url_name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def _gpus_page(client_as: Client, url: str | None = None, **params: str) -> str:
    return client_as(Role.VIEWER).get(url or reverse("fleet:devices"), params).content.decode()


def _live_data(page: str) -> dict:
    """The JSON the page hands static/js/gpus.js."""
    match = re.search(r'<script id="gpus-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "the page carries no data for gpus.js"
    return json.loads(match.group(1))


def _memory_bar(page: str, device_id: int) -> list[tuple[str, str, str]]:
    """(kind, width %, tooltip) of every stretch of a device's memory bar, in order."""
    row = re.search(rf'<tr data-device="{device_id}">(.*?)</tr>', page, re.S)
    assert row, f"no row for device {device_id}"
    return re.findall(r'data-seg="(\w+)"[^>]*style="width: ([\d.]+)%" title="([^"]*)"', row.group(1))


def test_gpus_page_when_empty_says_workers_register_their_node_and_how_to_start_one(
    client_as: Client,
) -> None:
    page = _gpus_page(client_as)

    assert "every worker registers its node" in page
    assert "./scripts/run.sh" in page
    assert "device queue" in page
    assert "sim:2x24GiB" in page
    assert "arrives with the next issue" not in page


def test_gpus_page_shows_nodes_with_their_devices_and_health(client_as: Client) -> None:
    DeviceFactory(
        node=NodeFactory(name="gpu-box-7"), name="NVIDIA A100-SXM4-40GB", health=DeviceHealth.DEGRADED
    )

    page = client_as(Role.VIEWER).get(reverse("fleet:devices")).content.decode()

    assert "gpu-box-7" in page
    assert "NVIDIA A100-SXM4-40GB" in page
    assert 'class="badge warn">Degraded' in page


def test_gpus_page_labels_a_simulated_device_as_simulated(client_as: Client) -> None:
    DeviceFactory(simulated=True)

    page = client_as(Role.VIEWER).get(reverse("fleet:devices")).content.decode()

    assert 'class="badge sim"' in page


def test_gpus_page_does_not_label_a_real_device_as_simulated(client_as: Client) -> None:
    DeviceFactory(simulated=False)

    page = client_as(Role.VIEWER).get(reverse("fleet:devices")).content.decode()

    assert 'class="badge sim"' not in page


def test_gpus_page_filters_nodes_by_name(client_as: Client) -> None:
    NodeFactory(name="alpha")
    NodeFactory(name="beta")

    page = client_as(Role.VIEWER).get(reverse("fleet:devices"), {"q": "alp"}).content.decode()

    assert "alpha" in page
    assert "beta" not in page


def test_node_page_shows_devices_and_active_placements(client_as: Client) -> None:
    placement = PlacementFactory(state=PlacementState.LOADED, version__model__name="llama")

    response = client_as(Role.VIEWER).get(reverse("fleet:node", args=[placement.device.node_id]))

    page = response.content.decode()
    assert response.status_code == 200
    assert placement.device.uuid in page
    assert "llama" in page


def test_node_page_of_an_unknown_node_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(reverse("fleet:node", args=[999_999])).status_code == 404


def test_device_page_labels_a_simulated_device_and_shows_readings(client_as: Client) -> None:
    sample = TelemetrySampleFactory(device__simulated=True, temperature_c=71.0)

    page = client_as(Role.VIEWER).get(reverse("fleet:device", args=[sample.device_id])).content.decode()

    assert 'class="badge sim"' in page
    assert "71 °C" in page


@pytest.mark.parametrize(("capacity_gib", "capped"), [(11.8, True), (76, False)])
def test_a_simulated_gpu_capped_by_host_memory_says_so(
    client_as: Client, capacity_gib: float, capped: bool
) -> None:
    device = DeviceFactory(
        simulated=True, memory_total_bytes=80 * GIB, capacity_bytes=int(capacity_gib * GIB)
    )

    detail = client_as(Role.VIEWER).get(reverse("fleet:device", args=[device.pk])).content.decode()
    table = _gpus_page(client_as)

    assert ("capped by host memory" in detail) is capped
    assert ("capped by host memory" in table) is capped


def test_placements_page_shows_a_failed_placements_error(client_as: Client) -> None:
    PlacementFactory(state=PlacementState.FAILED, error="CUDA out of memory")

    page = client_as(Role.VIEWER).get(reverse("serving:placements")).content.decode()

    assert "CUDA out of memory" in page


def test_placements_page_when_empty_says_what_makes_a_placement(client_as: Client) -> None:
    page = client_as(Role.VIEWER).get(reverse("serving:placements")).content.decode()

    assert "No model has been placed on a device yet" in page


def test_gpus_page_splits_memory_bar_into_placements_memory_moc_did_not_place_and_free(
    client_as: Client,
) -> None:
    device = DeviceFactory(memory_total_bytes=80 * GIB)
    PlacementFactory(device=device, state=PlacementState.LOADED, reserved_bytes=20 * GIB)
    PlacementFactory(
        device=device, state=PlacementState.LOADED, reserved_bytes=10 * GIB, measured_bytes=12 * GIB
    )
    TelemetrySampleFactory(device=device, mem_used_bytes=40 * GIB)

    bar = _memory_bar(_gpus_page(client_as), device.pk)

    assert [(kind, width) for kind, width, _ in bar] == [
        ("placement", "25.00"),
        ("placement", "15.00"),  # measured, not reserved, once the worker measured it
        ("other", "10.00"),
        ("free", "50.00"),
    ]


def test_gpus_page_memory_bar_leaves_out_placements_that_ended(client_as: Client) -> None:
    device = DeviceFactory(memory_total_bytes=80 * GIB)
    PlacementFactory(device=device, state=PlacementState.UNLOADED, reserved_bytes=20 * GIB)
    PlacementFactory(device=device, state=PlacementState.FAILED, reserved_bytes=20 * GIB)

    bar = _memory_bar(_gpus_page(client_as), device.pk)

    assert [(kind, width) for kind, width, _ in bar] == [("other", "0.00"), ("free", "100.00")]


def test_gpus_page_memory_bar_links_each_placement_to_its_version(client_as: Client) -> None:
    placement = PlacementFactory(state=PlacementState.LOADING, version__model__name="llama")

    page = _gpus_page(client_as)

    assert f'href="{placement.version.get_absolute_url()}"' in page
    assert _memory_bar(page, placement.device_id)[0][2].startswith(f"{placement.version} (loading)")


def test_gpus_page_names_running_jobs_in_the_memory_moc_did_not_place(client_as: Client) -> None:
    device = DeviceFactory()
    running = JobFactory(device=device, state=JobState.RUNNING)
    finished = JobFactory(device=device, state=JobState.SUCCEEDED)
    TelemetrySampleFactory(device=device, mem_used_bytes=5 * GIB)

    other = dict((kind, title) for kind, _, title in _memory_bar(_gpus_page(client_as), device.pk))["other"]

    assert other.startswith("Not placed by MOC: 5.0")
    assert str(running) in other
    assert str(finished) not in other


def test_gpus_page_scales_the_bar_when_placements_claim_more_than_the_device_has(client_as: Client) -> None:
    device = DeviceFactory(memory_total_bytes=10 * GIB)
    PlacementFactory(device=device, state=PlacementState.LOADED, reserved_bytes=15 * GIB)
    TelemetrySampleFactory(device=device, mem_used_bytes=20 * GIB)

    bar = _memory_bar(_gpus_page(client_as), device.pk)

    assert [(kind, width) for kind, width, _ in bar] == [
        ("placement", "75.00"),
        ("other", "25.00"),
        ("free", "0.00"),
    ]


def test_gpus_page_shows_each_device_latest_figures(client_as: Client) -> None:
    device = DeviceFactory(memory_total_bytes=24 * GIB)
    TelemetrySampleFactory(
        device=device, gpu_util=37.4, mem_used_bytes=6 * GIB, temperature_c=51.6, power_w=142.2
    )

    page = _gpus_page(client_as)

    assert 'data-fig="util">37%<' in page
    assert 'data-fig="mem">6.0\xa0GiB / 24.0\xa0GiB<' in page
    assert 'data-fig="temp">52 °C<' in page
    assert 'data-fig="power">142 W<' in page


def test_gpus_page_labels_every_simulated_device_and_its_node(client_as: Client) -> None:
    node = NodeFactory(backend=Backend.SIM)
    DeviceFactory.create_batch(3, node=node, simulated=True)

    page = _gpus_page(client_as)

    assert page.count('class="badge sim"') == 4


def test_gpus_page_says_why_a_device_is_not_healthy(client_as: Client) -> None:
    device = DeviceFactory(health=DeviceHealth.DEGRADED, health_reason="94 °C, above 85 °C")

    page = _gpus_page(client_as)

    row = re.search(rf'<tr data-device="{device.pk}">(.*?)</tr>', page, re.S).group(1)
    assert '<div class="error" data-fig="error">94 °C, above 85 °C</div>' in row


def test_gpus_page_greys_an_offline_node_and_shows_its_devices_unavailable(client_as: Client) -> None:
    device = DeviceFactory(
        node=NodeFactory(name="gone-box", state=NodeState.OFFLINE), health=DeviceHealth.HEALTHY
    )

    page = _gpus_page(client_as)

    assert '<section class="node offline" data-node-name="gone-box">' in page
    assert 'data-node-state class="badge bad">Offline' in page
    row = re.search(rf'<tr data-device="{device.pk}">(.*?)</tr>', page, re.S).group(1)
    assert ">Unavailable<" in row
    assert ">Healthy<" not in row


def test_gpus_page_draws_four_charts_per_node_with_a_trace_per_device(client_as: Client) -> None:
    node = NodeFactory()
    first, second = DeviceFactory.create_batch(2, node=node)

    page = _gpus_page(client_as)

    assert f'data-chart-devices="{first.pk},{second.pk}"' in page
    for metric in ("gpu_util", "mem_used_bytes", "temperature_c", "power_w"):
        assert f'data-metric="{metric}"' in page
    assert 'data-range="live" aria-pressed="true"' in page
    assert 'id="live-status"' in page


def test_gpus_page_hands_the_script_each_device_placements_and_running_jobs(client_as: Client) -> None:
    device = DeviceFactory(node=NodeFactory(name="gpu-box-1"), memory_total_bytes=24 * GIB, simulated=True)
    placement = PlacementFactory(
        device=device, state=PlacementState.LOADED, reserved_bytes=4 * GIB, measured_bytes=3 * GIB
    )
    job = JobFactory(device=device, state=JobState.RUNNING)

    data = _live_data(_gpus_page(client_as))

    assert data["all"] is True
    assert data["devices"] == [
        {
            "id": device.pk,
            "node": "gpu-box-1",
            "kind": "gpu",
            "index": device.index,
            "name": device.name,
            "simulated": True,
            "memory_total_bytes": 24 * GIB,
            "reserved_bytes": 3 * GIB,
            "mem_used_bytes": None,
            "placements": [
                {
                    "label": str(placement.version),
                    "state": "loaded",
                    "bytes": 3 * GIB,
                    "url": placement.version.get_absolute_url(),
                }
            ],
            "jobs": [{"label": str(job), "url": job.get_absolute_url()}],
        }
    ]


def test_filtered_gpus_page_tells_the_script_it_shows_only_some_devices(client_as: Client) -> None:
    DeviceFactory(node=NodeFactory(name="alpha"))
    DeviceFactory(node=NodeFactory(name="beta"))

    data = _live_data(_gpus_page(client_as, q="alp"))

    assert data["all"] is False
    assert [d["node"] for d in data["devices"]] == ["alpha"]


def test_gpus_page_reads_in_a_fixed_number_of_queries_however_many_nodes(
    client_as: Client, django_assert_max_num_queries: Callable
) -> None:
    client = client_as(Role.VIEWER)
    for _ in range(4):
        for device in DeviceFactory.create_batch(3, node=NodeFactory()):
            PlacementFactory(device=device, state=PlacementState.LOADED)
            JobFactory(device=device, state=JobState.RUNNING)
            TelemetrySampleFactory(device=device)

    with django_assert_max_num_queries(11):
        response = client.get(reverse("fleet:devices"))

    assert response.status_code == 200
    assert len(_live_data(response.content.decode())["devices"]) == 12


def test_node_page_hands_the_script_only_its_own_devices(client_as: Client) -> None:
    device = DeviceFactory()
    DeviceFactory()

    page = _gpus_page(client_as, reverse("fleet:node", args=[device.node_id]))

    data = _live_data(page)
    assert (data["all"], [d["id"] for d in data["devices"]]) == (False, [device.pk])
    assert f'data-chart-devices="{device.pk}"' in page
    assert [kind for kind, _, _ in _memory_bar(page, device.pk)] == ["other", "free"]


def test_device_page_draws_its_charts_and_memory_bar(client_as: Client) -> None:
    device = DeviceFactory(memory_total_bytes=80 * GIB)
    PlacementFactory(device=device, state=PlacementState.LOADED, reserved_bytes=40 * GIB)

    page = _gpus_page(client_as, reverse("fleet:device", args=[device.pk]))

    assert f'data-chart-devices="{device.pk}"' in page
    assert [(kind, width) for kind, width, _ in _memory_bar(page, device.pk)] == [
        ("placement", "50.00"),
        ("other", "0.00"),
        ("free", "50.00"),
    ]
    assert [d["id"] for d in _live_data(page)["devices"]] == [device.pk]


def test_overview_fleet_block_totals_devices_memory_utilisation_and_the_hottest(client_as: Client) -> None:
    node = NodeFactory(name="gpu-box-1")
    cool = DeviceFactory(node=node, index=0, memory_total_bytes=24 * GIB, simulated=True)
    hot = DeviceFactory(node=node, index=1, memory_total_bytes=24 * GIB, name="Simulated GPU 24 GiB")
    TelemetrySampleFactory(device=cool, gpu_util=20.0, mem_used_bytes=6 * GIB, temperature_c=50.0)
    TelemetrySampleFactory(device=hot, gpu_util=60.0, mem_used_bytes=6 * GIB, temperature_c=81.0)
    gone = DeviceFactory(node=NodeFactory(state=NodeState.OFFLINE), memory_total_bytes=80 * GIB)
    TelemetrySampleFactory(device=gone, temperature_c=99.0)

    page = client_as(Role.VIEWER).get(reverse("overview")).content.decode()

    block = re.search(r'<section id="fleet-totals".*?</section>', page, re.S).group(0)
    assert 'data-total="devices">2<' in block
    assert 'data-total="simulated">1 simulated<' in block
    assert 'data-total="memory">12.0\xa0GiB<' in block
    assert 'data-total="memory-of">of 48.0\xa0GiB · 25%<' in block
    assert 'data-total="util">40%<' in block
    assert 'data-total="hottest">81 °C<' in block
    assert "gpu-box-1 · GPU 1" in block


# --- retired devices: a node that no longer offers a device (e.g. its CPU, once it runs simulated GPUs)


def _retired_cpu(node: object) -> object:
    return DeviceFactory(
        node=node,
        kind="cpu",
        index=0,
        name="AMD EPYC (host memory)",
        memory_total_bytes=64 * GIB,
        health=DeviceHealth.UNAVAILABLE,
        retired_at=timezone.now(),
    )


def test_overview_counts_no_retired_device(client_as: Client) -> None:
    node = NodeFactory(name="gpu-box-1", backend=Backend.SIM)
    gpu = DeviceFactory(node=node, index=0, memory_total_bytes=24 * GIB, simulated=True)
    TelemetrySampleFactory(device=gpu, mem_used_bytes=6 * GIB, temperature_c=50.0)
    cpu = _retired_cpu(node)
    TelemetrySampleFactory(device=cpu, mem_used_bytes=30 * GIB, temperature_c=90.0)

    page = client_as(Role.VIEWER).get(reverse("overview")).content.decode()

    block = re.search(r'<section id="fleet-totals".*?</section>', page, re.S).group(0)
    assert 'data-total="devices">1<' in block
    assert 'data-total="memory-of">of 24.0\xa0GiB · 25%<' in block
    assert 'data-total="hottest">50 °C<' in block
    cards = re.search(r'<section class="cards">.*?</section>', page, re.S).group(0)
    assert "CPU" not in cards  # the card's hint counts CPU devices; the retired one is none


def test_gpus_page_puts_a_retired_device_out_of_the_way_without_live_figures(client_as: Client) -> None:
    node = NodeFactory(name="gpu-box-1", backend=Backend.SIM)
    gpu = DeviceFactory(node=node, index=0, simulated=True)
    cpu = _retired_cpu(node)
    TelemetrySampleFactory(device=cpu, gpu_util=77.0)

    page = _gpus_page(client_as)

    assert f'<tr data-device="{gpu.pk}">' in page
    assert f'<tr data-device="{cpu.pk}">' not in page  # no row of (stale) figures
    assert [d["id"] for d in _live_data(page)["devices"]] == [gpu.pk]
    assert f'data-chart-devices="{gpu.pk}"' in page
    retired = re.search(r"<details class=\"retired-devices\".*?</details>", page, re.S)
    assert retired, "no Retired devices part"
    assert '<details class="retired-devices" data-retired-devices>' in page  # collapsed: no `open`
    assert f'data-retired-device="{cpu.pk}"' in retired.group(0)
    assert "77%" not in page


def test_gpus_page_asks_serving_only_about_the_devices_a_node_offers(client_as: Client) -> None:
    node = NodeFactory(name="gpu-box-1", backend=Backend.SIM)
    gpu = DeviceFactory(node=node, index=0, simulated=True)
    cpu = _retired_cpu(node)

    page = _gpus_page(client_as)

    slots = re.findall(r'hx-get="([^"]*)"', page)
    device_slots = [s for s in slots if "device=" in s]
    assert device_slots, "no serving section for the node's devices"
    assert all(f"device={gpu.pk}" in s and f"device={cpu.pk}" not in s for s in device_slots)


def test_node_page_lists_a_retired_device_apart(client_as: Client) -> None:
    node = NodeFactory(name="gpu-box-1", backend=Backend.SIM)
    gpu = DeviceFactory(node=node, index=0, simulated=True)
    cpu = _retired_cpu(node)

    page = _gpus_page(client_as, reverse("fleet:node", args=[node.pk]))

    assert [d["id"] for d in _live_data(page)["devices"]] == [gpu.pk]
    assert f'<tr data-device="{cpu.pk}">' not in page
    assert f'data-retired-device="{cpu.pk}"' in page


def test_device_page_of_a_retired_device_says_so_and_shows_no_live_figures(client_as: Client) -> None:
    cpu = _retired_cpu(NodeFactory(name="gpu-box-1", backend=Backend.SIM))
    TelemetrySampleFactory(device=cpu, gpu_util=77.0)

    page = with_sections(client_as(Role.OPERATOR), reverse("fleet:device", args=[cpu.pk]))

    assert ">retired</span>" in page
    assert "gpus-data" not in page
    assert "data-chart-devices" not in page
    assert "77%" not in page
    assert "Load a version" not in page
    assert "nothing is placed here" in page


def test_device_page_of_an_offered_device_offers_load(client_as: Client) -> None:
    device = DeviceFactory(node=NodeFactory(backend=Backend.SIM), simulated=True)
    ModelVersionFactory(validation_state=ValidationState.VALID, kind="causal-lm", format="hf")

    page = with_sections(client_as(Role.OPERATOR), reverse("fleet:device", args=[device.pk]))

    assert "Load a version" in page
    assert ">retired</span>" not in page


# --- live: what MOC holds on each device, re-read by static/js/gpus.js


def test_devices_live_answers_each_device_reserved_memory_and_placements(client_as: Client) -> None:
    device = DeviceFactory(memory_total_bytes=24 * GIB)
    placement = PlacementFactory(device=device, state=PlacementState.LOADED, reserved_bytes=5 * GIB)
    retired = _retired_cpu(device.node)

    response = client_as(Role.VIEWER).get(
        reverse("fleet:devices_live"), {"device": [device.pk, retired.pk, "x", "²", "9" * 30]}
    )

    assert response.status_code == 200
    (row,) = response.json()["devices"]
    assert (row["id"], row["reserved_bytes"]) == (device.pk, 5 * GIB)
    assert row["placements"] == [
        {
            "label": str(placement.version),
            "state": "loaded",
            "bytes": 5 * GIB,
            "url": placement.version.get_absolute_url(),
        }
    ]


def test_devices_live_needs_a_login(client_as: Client) -> None:
    response = client_as(None).get(reverse("fleet:devices_live"), {"device": 1})

    assert response.status_code == 302


def test_gpus_page_tells_the_script_where_to_reread_holdings_and_marks_reserved_memory(
    client_as: Client,
) -> None:
    device = DeviceFactory()

    page = _gpus_page(client_as)

    data = _live_data(page)
    assert data["holdings_url"] == reverse("fleet:devices_live")
    assert data["poll_s"] > 0
    assert f'<span data-reserved="{device.pk}">' in page


# --- small screens and the browser tab


def test_favicon_ico_is_answered_without_a_login(client_as: Client) -> None:
    response = client_as(None).get("/favicon.ico")

    assert response.status_code == 302
    assert response["Location"].endswith("favicon.svg")
    assert client_as(None).get(response["Location"]).status_code == 200


def test_pages_link_the_favicon(client_as: Client) -> None:
    page = _gpus_page(client_as)

    assert 'rel="icon" href="/static/favicon.svg"' in page
