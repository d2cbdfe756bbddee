from collections.abc import Callable

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.fleet.domain.states import DeviceHealth, PlacementState
from tests.fleet.factories import DeviceFactory, NodeFactory, PlacementFactory, TelemetrySampleFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]
PAGES = ["fleet:devices", "fleet:placements"]


@pytest.mark.parametrize("url_name", PAGES)
def test_list_page_loads_for_a_viewer(client_as: Client, url_name: str) -> None:
    PlacementFactory()

    assert client_as(Role.VIEWER).get(reverse(url_name)).status_code == 200


@pytest.mark.parametrize("url_name", PAGES)
def test_list_page_sends_anonymous_visitors_to_log_in(client_as: Client, url_name: str) -> None:
    response = client_as(None).get(reverse(url_name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_gpus_page_when_empty_says_how_to_start_a_worker(client_as: Client) -> None:
    page = client_as(Role.VIEWER).get(reverse("fleet:devices")).content.decode()

    assert "./scripts/run.sh" in page
    assert "device queue" in page


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


def test_placements_page_shows_a_failed_placements_error(client_as: Client) -> None:
    PlacementFactory(state=PlacementState.FAILED, error="CUDA out of memory")

    page = client_as(Role.VIEWER).get(reverse("fleet:placements")).content.decode()

    assert "CUDA out of memory" in page


def test_placements_page_when_empty_says_what_makes_a_placement(client_as: Client) -> None:
    page = client_as(Role.VIEWER).get(reverse("fleet:placements")).content.decode()

    assert "No model has been placed on a device yet" in page
