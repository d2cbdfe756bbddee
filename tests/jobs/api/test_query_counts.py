from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from tests.fleet.factories import DeviceFactory
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db


def queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def make_job(creator: object) -> None:
    JobFactory(model_version=ModelVersionFactory(), device=DeviceFactory(), created_by=creator)


@pytest.mark.parametrize("url", ["/api/v1/jobs/", "/jobs/"])
def test_jobs_list_costs_the_same_queries_for_one_row_or_many(
    client_as: Callable[[Role | None], APIClient], make_user: Callable[..., object], url: str
) -> None:
    client = client_as(Role.VIEWER)
    creator = make_user(Role.OPERATOR)
    make_job(creator)
    one = queries(client, url)

    for _ in range(3):
        make_job(creator)

    assert queries(client, url) == one
