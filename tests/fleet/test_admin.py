import pytest
from django.test import Client
from django.urls import reverse

from apps.fleet.models import Device, Node, TelemetrySample
from apps.serving.models import Placement
from tests.fleet.factories import TelemetrySampleFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [Node, Device, TelemetrySample, Placement])
def test_changelist_loads_for_an_admin_with_a_search(admin_client_: Client, model: type) -> None:
    placement = PlacementFactory(device__node__name="gpu-box-1")
    TelemetrySampleFactory(device=placement.device)

    response = admin_client_.get(
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"), {"q": "gpu-box"}
    )

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1


def test_placement_changelist_filters_by_state(admin_client_: Client) -> None:
    PlacementFactory(state="loaded")
    PlacementFactory(state="failed")

    response = admin_client_.get(reverse("admin:serving_placement_changelist"), {"state__exact": "failed"})

    assert [p.state for p in response.context["cl"].result_list] == ["failed"]


def test_node_change_page_loads_with_its_devices(admin_client_: Client) -> None:
    placement = PlacementFactory()

    response = admin_client_.get(reverse("admin:fleet_node_change", args=[placement.device.node_id]))

    assert response.status_code == 200
