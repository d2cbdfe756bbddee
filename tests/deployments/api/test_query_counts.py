from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.states import ReleaseState
from tests.deployments.factories import CheckResultFactory, ReleaseFactory

pytestmark = pytest.mark.django_db


def queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def make_rows() -> None:
    release = ReleaseFactory(state=ReleaseState.PROMOTED)
    release.deployment.current_release = release
    release.deployment.registered_model = release.model_version.model
    release.deployment.save()
    CheckResultFactory(run__release=release)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/deployments/",
        "/api/v1/releases/",
        "/api/v1/verification-runs/",
        "/api/v1/check-results/",
        "/deployments/",
    ],
)
def test_list_costs_the_same_queries_for_one_row_or_many(
    client_as: Callable[[Role | None], APIClient], url: str
) -> None:
    client = client_as(Role.VIEWER)
    make_rows()
    one = queries(client, url)

    for _ in range(3):
        make_rows()

    assert queries(client, url) == one
