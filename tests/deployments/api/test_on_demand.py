"""The on-demand settings (pinned, keep-alive, wake timeout) and the API keys' grants through the
REST API: shown, validated naming the field, audited, admins only for grants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.core import services as core_services
from apps.core.domain.roles import Role
from apps.core.models import ApiKey, AuditEvent
from apps.deployments.models import MAX_WINDOW_S, KeyGrant
from tests.deployments.factories import DeploymentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/deployments/"
ClientAs = Callable[[Role | None], APIClient]


def keys_url(name: str, key_id: str = "") -> str:
    return f"{URL}{name}/keys/" + (f"{key_id}/" if key_id else "")


@pytest.fixture
def key(make_user: Callable[..., Any]) -> ApiKey:
    owner = make_user(Role.OPERATOR, "ci-bot")
    api_key, _ = core_services.api_key_create(
        owner=owner, name="ci", role=Role.OPERATOR, acting_role=Role.OPERATOR
    )
    return api_key


def test_a_deployment_shows_its_on_demand_settings(client_as: ClientAs) -> None:
    DeploymentFactory(name="chat", keep_alive_s=120)

    row = client_as(Role.VIEWER).get(f"{URL}chat/").json()

    assert (row["pinned"], row["keep_alive_s"], row["wake_timeout_s"]) == (False, 120, 60)


def test_an_operator_pins_a_deployment_and_sets_its_timeouts(client_as: ClientAs) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.OPERATOR).patch(
        f"{URL}chat/", {"pinned": True, "keep_alive_s": 300, "wake_timeout_s": 120}, format="json"
    )

    assert response.status_code == 200
    assert [response.json()[f] for f in ("pinned", "keep_alive_s", "wake_timeout_s")] == [True, 300, 120]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("wake_timeout_s", 0),
        ("wake_timeout_s", 601),
        ("keep_alive_s", 0),
        ("keep_alive_s", MAX_WINDOW_S + 1),
        ("pinned", "sometimes"),
    ],
)
def test_a_bad_on_demand_setting_is_refused_naming_it(client_as: ClientAs, field: str, value: Any) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.OPERATOR).patch(f"{URL}chat/", {field: value}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]


def test_an_empty_keep_alive_means_the_default(client_as: ClientAs) -> None:
    DeploymentFactory(name="chat", keep_alive_s=120)

    response = client_as(Role.OPERATOR).patch(f"{URL}chat/", {"keep_alive_s": None}, format="json")

    assert (response.status_code, response.json()["keep_alive_s"]) == (200, None)


def test_an_admin_grants_a_key_and_lists_it(client_as: ClientAs, key: ApiKey) -> None:
    DeploymentFactory(name="chat")
    admin = client_as(Role.ADMIN)

    created = admin.post(keys_url("chat"), {"key": key.prefix}, format="json")
    listed = client_as(Role.VIEWER).get(keys_url("chat"))

    assert created.status_code == 201
    assert (created.json()["key"]["prefix"], created.json()["deployment"]["name"]) == (key.prefix, "chat")
    assert [(g["key"]["prefix"], g["key"]["name"]) for g in listed.json()["results"]] == [(key.prefix, "ci")]
    assert AuditEvent.objects.filter(action="create", content_type__model="keygrant").count() == 1
    key.refresh_from_db()
    assert key.limited  # for good: limited to its grants from now on


def test_a_deployments_keys_list_only_its_own_grants(client_as: ClientAs, key: ApiKey) -> None:
    chat, other = DeploymentFactory(name="chat"), DeploymentFactory(name="other")
    KeyGrant.objects.create(key=key, deployment=other)

    assert client_as(Role.VIEWER).get(keys_url(chat.name)).json()["results"] == []


def test_granting_an_unknown_key_is_400_naming_key(client_as: ClientAs) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.ADMIN).post(keys_url("chat"), {"key": "nosuch00"}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"]["key"] == ["No API key 'nosuch00'."]


def test_granting_a_revoked_key_is_400_naming_key(client_as: ClientAs, key: ApiKey) -> None:
    DeploymentFactory(name="chat")
    ApiKey.objects.filter(pk=key.pk).update(revoked=True)

    response = client_as(Role.ADMIN).post(keys_url("chat"), {"key": key.prefix}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["key"]


def test_granting_twice_is_409(client_as: ClientAs, key: ApiKey) -> None:
    KeyGrant.objects.create(key=key, deployment=DeploymentFactory(name="chat"))

    response = client_as(Role.ADMIN).post(keys_url("chat"), {"key": key.prefix}, format="json")

    assert response.status_code == 409
    assert KeyGrant.objects.count() == 1


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_only_admins_grant_or_take_back(client_as: ClientAs, key: ApiKey, role: Role) -> None:
    KeyGrant.objects.create(key=key, deployment=DeploymentFactory(name="chat"))
    DeploymentFactory(name="other")
    caller = client_as(role)

    assert caller.post(keys_url("other"), {"key": key.prefix}, format="json").status_code == 403
    assert caller.delete(keys_url("chat", key.prefix)).status_code == 403
    assert KeyGrant.objects.count() == 1


def test_an_admin_takes_a_grant_back(client_as: ClientAs, key: ApiKey) -> None:
    KeyGrant.objects.create(key=key, deployment=DeploymentFactory(name="chat"))
    admin = client_as(Role.ADMIN)

    response = admin.delete(keys_url("chat", key.prefix))

    assert response.status_code == 204
    assert not KeyGrant.objects.exists()
    assert AuditEvent.objects.filter(action="delete", content_type__model="keygrant").count() == 1
    key.refresh_from_db()
    assert key.limited  # with no grant left it calls none (a grant made before the flag too)
    assert admin.delete(keys_url("chat", key.prefix)).status_code == 404


def test_keys_of_an_unknown_deployment_are_404(client_as: ClientAs, key: ApiKey) -> None:
    admin = client_as(Role.ADMIN)

    assert admin.get(keys_url("nosuch")).status_code == 404
    assert admin.post(keys_url("nosuch"), {"key": key.prefix}, format="json").status_code == 404


def test_the_schema_documents_the_grants_and_the_settings(client: Client, viewer: object) -> None:
    client.force_login(viewer)

    schema = client.get("/api/schema/", {"format": "json"}).json()

    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/deployments/{name}/keys/"])
    assert {"201", "409"} <= set(paths["/api/v1/deployments/{name}/keys/"]["post"]["responses"])
    assert "delete" in paths["/api/v1/deployments/{name}/keys/{key_id}/"]
    deployment = schema["components"]["schemas"]["Deployment"]["properties"]
    assert {"pinned", "keep_alive_s", "wake_timeout_s"} <= set(deployment)
    wake = schema["components"]["schemas"]["PatchedDeploymentUpdateInputRequest"]["properties"][
        "wake_timeout_s"
    ]
    assert (wake["minimum"], wake["maximum"]) == (1, 600)
