"""Creating API keys through the API: what a new key may be."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core import services
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


@pytest.mark.django_db
def test_a_keys_limit_to_its_deployments_is_shown_and_never_set_through_the_api(
    client_as: Callable[[Role | None], APIClient],
) -> None:
    client = client_as(Role.OPERATOR)

    created = client.post(KEYS, {"name": "ci", "role": "viewer", "limited": True}, format="json")
    ApiKey.objects.update(limited=True)  # as its first grant does (apps.deployments.services)
    listed = client.get(KEYS).json()["results"]

    assert (created.status_code, created.json()["limited"]) == (201, False)
    assert [k["limited"] for k in listed] == [True]


@pytest.mark.django_db
def test_an_admin_lifts_a_keys_limit_in_the_admin(
    make_user: Callable[..., Any], admin_client_: Client
) -> None:
    key, _ = services.api_key_create(
        owner=make_user(Role.OPERATOR), name="ci", role=Role.OPERATOR, acting_role=Role.OPERATOR
    )
    ApiKey.objects.filter(pk=key.pk).update(limited=True)
    url = reverse("admin:core_apikey_change", args=[key.pk])
    form = {"name": "ci", "owner": key.owner_id, "role": "operator", "limited": ""}

    listed = admin_client_.get(reverse("admin:core_apikey_changelist"), {"limited__exact": "1"})
    saved = admin_client_.post(url, form)

    assert key.prefix in listed.content.decode()
    assert saved.status_code == 302, saved.content.decode()[:2000]
    key.refresh_from_db()
    assert not key.limited
