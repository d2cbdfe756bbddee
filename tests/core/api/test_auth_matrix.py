"""Who may call the API with which credentials: sessions and API keys of every role,
and the credentials that must be refused, against core's endpoints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core import roles, services
from apps.core.domain.roles import Role
from apps.core.models import ApiKey


@dataclass
class Caller:
    client: APIClient
    role: Role | None
    username: str | None = None
    key_prefix: str | None = None


def _keyed(client: APIClient, role: Role | None) -> Caller:
    prefix = client.key_secret.partition(".")[0]
    owner = ApiKey.objects.select_related("owner").get(prefix=prefix).owner
    return Caller(client, role, owner.get_username(), prefix)


@pytest.fixture
def caller(
    request: pytest.FixtureRequest, make_user: Callable[..., object], key_client: Callable[..., APIClient]
) -> Caller:
    """The caller named by the parameter: a session, a key, or a credential that must fail."""
    name = request.param
    if name == "anonymous":
        return Caller(APIClient(), None)
    if name in {"viewer", "operator", "admin"}:
        user = make_user(Role(name))
        client = APIClient()
        client.force_login(user)
        return Caller(client, Role(name), user.get_username())
    if name in {"viewer-key", "operator-key", "admin-key"}:
        role = Role(name.removesuffix("-key"))
        return _keyed(key_client(role), role)
    if name == "api-key-scheme":
        return _keyed(key_client(Role.OPERATOR, scheme="Api-Key"), Role.OPERATOR)
    if name == "admin-owned-viewer-key":
        return _keyed(key_client(Role.VIEWER, owner_role=Role.ADMIN), Role.VIEWER)
    if name == "revoked-key":
        refused = _keyed(key_client(Role.OPERATOR), None)
        ApiKey.objects.filter(prefix=refused.key_prefix).update(revoked=True)
        return refused
    if name == "expired-key":
        yesterday = timezone.now() - dt.timedelta(days=1)
        _, secret = services.api_key_create(
            owner=make_user(Role.OPERATOR),
            name="old",
            role=Role.OPERATOR,
            acting_role=Role.OPERATOR,
            expiry_date=yesterday,
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return Caller(client, None)
    if name == "unknown-key":
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer Zz9Zz9Zz.notARealSecretNotARealSecret0000")
        return Caller(client, None)
    raise AssertionError(f"no caller called {name}")


SESSIONS = ["viewer", "operator", "admin"]
KEYS = ["viewer-key", "operator-key", "admin-key", "api-key-scheme", "admin-owned-viewer-key"]
ACCEPTED = [*SESSIONS, *KEYS]
# (caller, error code, a phrase the detail must contain)
REFUSED = [
    pytest.param("anonymous", "not_authenticated", "credentials were not provided", id="anonymous"),
    pytest.param("revoked-key", "authentication_failed", "revoked", id="revoked-key"),
    pytest.param("expired-key", "authentication_failed", "expired", id="expired-key"),
    pytest.param("unknown-key", "authentication_failed", "Unknown API key", id="unknown-key"),
]
READS = ["/api/v1/audit-events/", "/api/v1/task-deliveries/", "/api/v1/me/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("caller", ACCEPTED, indirect=True)
def test_accepted_callers_may_read(caller: Caller, path: str) -> None:
    response = caller.client.get(path)

    assert response.status_code == 200, response.content


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [("get", p) for p in READS] + [("post", "/api/v1/api-keys/")])
@pytest.mark.parametrize(("caller", "code", "why"), REFUSED, indirect=["caller"])
def test_refused_callers_get_401_saying_why(
    caller: Caller, code: str, why: str, method: str, path: str
) -> None:
    response = getattr(caller.client, method)(
        path, {"name": "k", "role": "viewer"} if method == "post" else None
    )

    assert response.status_code == 401
    body = response.json()
    assert body["error"] == code
    assert why in body["detail"]
    assert body["fields"] == {}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ACCEPTED, indirect=True)
def test_me_reports_the_callers_role_and_key(caller: Caller) -> None:
    body = caller.client.get("/api/v1/me/").json()

    assert body["username"] == caller.username
    assert body["role"] == caller.role.value
    assert body["api_key"] == caller.key_prefix


@pytest.mark.django_db
@pytest.mark.parametrize("caller", SESSIONS, indirect=True)
def test_caller_may_create_a_key_with_its_own_role(caller: Caller) -> None:
    response = caller.client.post("/api/v1/api-keys/", {"name": "ci", "role": caller.role.value})

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["role"], body["owner"]["username"]) == (
        "ci",
        caller.role.value,
        caller.username,
    )
    assert ApiKey.objects.filter(prefix=body["prefix"], owner__username=caller.username).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("caller", KEYS, indirect=True)
def test_a_key_may_not_create_keys_so_a_leaked_one_cannot_mint_a_successor(caller: Caller) -> None:
    response = caller.client.post("/api/v1/api-keys/", {"name": "ci", "role": "viewer"})

    assert response.status_code == 403
    assert (
        response.json()["detail"]
        == "API keys are created and revoked by people (a browser session), not by API keys."
    )
    assert not ApiKey.objects.filter(name="ci").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("caller", KEYS, indirect=True)
def test_a_key_may_list_its_owners_keys(caller: Caller) -> None:
    response = caller.client.get("/api/v1/api-keys/")

    assert response.status_code == 200
    assert caller.key_prefix in {k["prefix"] for k in response.json()["results"]}


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["viewer", "operator"], indirect=True)
def test_caller_may_not_create_a_key_above_its_role(caller: Caller) -> None:
    above = Role.ADMIN if caller.role is Role.OPERATOR else Role.OPERATOR

    response = caller.client.post("/api/v1/api-keys/", {"name": "ci", "role": above.value})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert "role" in body["fields"]
    assert not ApiKey.objects.filter(name="ci").exists()


@pytest.mark.django_db
def test_a_key_never_has_more_rights_than_its_owner_has_now(key_client: Callable[..., APIClient]) -> None:
    client = key_client(Role.OPERATOR)
    owner = ApiKey.objects.get(prefix=client.key_secret.partition(".")[0]).owner
    roles.set_role(owner, Role.VIEWER)

    assert client.get("/api/v1/me/").json()["role"] == "viewer"
    assert client.post("/api/v1/registered-models/", {"name": "m"}).status_code == 403


@pytest.mark.django_db
def test_a_key_of_an_inactive_owner_is_refused(key_client: Callable[..., APIClient]) -> None:
    client = key_client(Role.OPERATOR)
    owner = ApiKey.objects.get(prefix=client.key_secret.partition(".")[0]).owner
    owner.is_active = False
    owner.save(update_fields=["is_active"])

    response = client.get("/api/v1/me/")

    assert response.status_code == 401
    assert response.json()["detail"] == "The owner of this API key is inactive."


@pytest.mark.django_db
def test_a_malformed_authorization_header_is_refused(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/me/", HTTP_AUTHORIZATION="Bearer two words")

    assert response.status_code == 401
    assert "Malformed Authorization header" in response.json()["detail"]


def _own_key(user: object, role: Role = Role.VIEWER) -> tuple[ApiKey, str]:
    return services.api_key_create(owner=user, name="mine", role=role, acting_role=role)


@pytest.mark.django_db
def test_create_returns_the_secret(client_as: Callable[..., APIClient]) -> None:
    body = client_as(Role.VIEWER).post("/api/v1/api-keys/", {"name": "ci", "role": "viewer"}).json()

    assert body["key"].startswith(body["prefix"] + ".")
    assert len(body["key"]) > len(body["prefix"]) + 20


@pytest.mark.django_db
def test_list_never_shows_a_secret(make_user: Callable[..., object]) -> None:
    user = make_user(Role.VIEWER)
    _, secret = _own_key(user)
    client = APIClient()
    client.force_login(user)

    response = client.get("/api/v1/api-keys/")

    assert [k["name"] for k in response.json()["results"]] == ["mine"]
    assert "key" not in response.json()["results"][0]
    assert secret.partition(".")[2] not in response.content.decode()


@pytest.mark.django_db
def test_retrieve_never_shows_a_secret(make_user: Callable[..., object]) -> None:
    user = make_user(Role.VIEWER)
    api_key, secret = _own_key(user)
    client = APIClient()
    client.force_login(user)

    response = client.get(f"/api/v1/api-keys/{api_key.prefix}/")

    assert response.status_code == 200
    assert "key" not in response.json()
    assert secret.partition(".")[2] not in response.content.decode()


@pytest.mark.django_db
def test_only_a_hash_of_the_secret_is_stored(make_user: Callable[..., object]) -> None:
    api_key, secret = _own_key(make_user(Role.VIEWER))

    row = ApiKey.objects.filter(pk=api_key.pk).values().get()

    secret_part = secret.partition(".")[2]
    assert all(secret_part not in str(value) for value in row.values())
    assert ApiKey.objects.key_generator.verify(secret, row["hashed_key"])


@pytest.mark.django_db
def test_list_shows_only_the_callers_own_keys(make_user: Callable[..., object]) -> None:
    me, someone = make_user(Role.ADMIN), make_user(Role.VIEWER)
    _own_key(someone)
    client = APIClient()
    client.force_login(me)

    assert client.get("/api/v1/api-keys/").json()["results"] == []


@pytest.mark.django_db
def test_admin_lists_everyones_keys_with_all(make_user: Callable[..., object]) -> None:
    admin, someone = make_user(Role.ADMIN), make_user(Role.VIEWER)
    _own_key(someone)
    client = APIClient()
    client.force_login(admin)

    results = client.get("/api/v1/api-keys/?all=1").json()["results"]

    assert [k["owner"]["username"] for k in results] == [someone.get_username()]


@pytest.mark.django_db
def test_all_is_ignored_for_non_admins(make_user: Callable[..., object]) -> None:
    operator, someone = make_user(Role.OPERATOR), make_user(Role.VIEWER)
    _own_key(someone)
    client = APIClient()
    client.force_login(operator)

    assert client.get("/api/v1/api-keys/?all=1").json()["results"] == []


@pytest.mark.django_db
def test_revoking_another_users_key_is_not_found(make_user: Callable[..., object]) -> None:
    someone_key, _ = _own_key(make_user(Role.VIEWER))
    client = APIClient()
    client.force_login(make_user(Role.OPERATOR))

    response = client.post(f"/api/v1/api-keys/{someone_key.prefix}/revoke/")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert ApiKey.objects.get(pk=someone_key.pk).revoked is False


@pytest.mark.django_db
def test_revoking_own_key_returns_it_revoked(make_user: Callable[..., object]) -> None:
    user = make_user(Role.VIEWER)
    api_key, _ = _own_key(user)
    client = APIClient()
    client.force_login(user)

    response = client.post(f"/api/v1/api-keys/{api_key.prefix}/revoke/")

    assert response.status_code == 200
    assert (response.json()["prefix"], response.json()["revoked"]) == (api_key.prefix, True)
    assert ApiKey.objects.get(pk=api_key.pk).revoked is True


@pytest.mark.django_db
def test_a_key_cannot_revoke_keys(key_client: Callable[..., APIClient]) -> None:
    client = key_client(Role.OPERATOR)
    prefix = client.key_secret.partition(".")[0]

    assert client.post(f"/api/v1/api-keys/{prefix}/revoke/").status_code == 403
    assert ApiKey.objects.get(prefix=prefix).revoked is False


MODEL = ("/api/v1/registered-models/", {"name": "llama-3.1-8b"})
RULE = ("/api/v1/alert-rules/", {"name": "gpu-hot", "metric": "DCGM_FI_DEV_GPU_TEMP", "threshold": 85})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("caller", "target", "status"),
    [
        pytest.param("viewer", MODEL, 403, id="viewer-registers-model"),
        pytest.param("viewer", RULE, 403, id="viewer-adds-rule"),
        pytest.param("operator", MODEL, 201, id="operator-registers-model"),
        pytest.param("operator", RULE, 403, id="operator-adds-rule"),
        pytest.param("admin", MODEL, 201, id="admin-registers-model"),
        pytest.param("admin", RULE, 201, id="admin-adds-rule"),
        pytest.param("viewer-key", MODEL, 403, id="viewer-key-registers-model"),
        pytest.param("operator-key", MODEL, 201, id="operator-key-registers-model"),
        pytest.param("operator-key", RULE, 403, id="operator-key-adds-rule"),
        pytest.param("admin-key", RULE, 201, id="admin-key-adds-rule"),
        pytest.param("admin-owned-viewer-key", MODEL, 403, id="admins-viewer-key-registers-model"),
    ],
    indirect=["caller"],
)
def test_writes_to_other_apps_follow_the_callers_role(
    caller: Caller, target: tuple[str, dict], status: int
) -> None:
    url, payload = target

    response = caller.client.post(url, payload)

    assert response.status_code == status, response.content
    if status == 403:
        assert response.json()["error"] == "permission_denied"
