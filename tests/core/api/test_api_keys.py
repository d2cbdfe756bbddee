"""Creating API keys through the API: what a new key may be."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import ApiKey

KEYS = "/api/v1/api-keys/"


@pytest.mark.django_db
def test_a_key_whose_expiry_has_passed_is_refused_naming_the_field(
    client_as: Callable[[Role | None], APIClient],
) -> None:
    yesterday = timezone.now() - dt.timedelta(days=1)

    response = client_as(Role.OPERATOR).post(
        KEYS, {"name": "ci", "role": "viewer", "expiry_date": yesterday.isoformat()}
    )

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert list(body["fields"]) == ["expiry_date"]
    assert "future" in body["fields"]["expiry_date"][0]
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_a_key_expiring_in_the_future_is_created(client_as: Callable[[Role | None], APIClient]) -> None:
    tomorrow = timezone.now() + dt.timedelta(days=1)

    response = client_as(Role.OPERATOR).post(
        KEYS, {"name": "ci", "role": "viewer", "expiry_date": tomorrow.isoformat()}
    )

    assert response.status_code == 201
    assert ApiKey.objects.get().expiry_date == tomorrow
