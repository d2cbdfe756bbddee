from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from tests.fleet.factories import DeviceFactory, TelemetrySampleFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db


def _queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", ["/api/v1/nodes/", "/api/v1/devices/", "/api/v1/placements/"])
def test_list_costs_the_same_queries_for_one_row_or_many(
    client_as: Callable[[Role | None], APIClient], url: str
) -> None:
    client = client_as(Role.VIEWER)
    TelemetrySampleFactory(device=PlacementFactory().device)
    one = _queries(client, url)

    for _ in range(3):
        TelemetrySampleFactory(device=PlacementFactory(device=DeviceFactory()).device)

    assert _queries(client, url) == one
