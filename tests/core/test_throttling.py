"""Request throttles of the API and the lockout of repeated failed logins."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.api import throttling
from apps.core.domain.roles import Role
from apps.core.models import ApiKey

LIMIT = 3
# Anonymous callers are refused (401) until the anonymous throttle stops them (429).
ANON_URL = "/api/v1/audit-events/"


@pytest.fixture(autouse=True)
def small_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRF reads the rates into the class when it is defined, so they are patched there."""
    scopes = ("anon", "user", "api_key", "api_key_failures")
    rates = {scope: f"{LIMIT}/min" for scope in scopes}
    for throttle in (
        throttling.AnonThrottle,
        throttling.UserThrottle,
        throttling.ApiKeyThrottle,
        throttling.KeyFailureThrottle,
    ):
        monkeypatch.setattr(throttle, "THROTTLE_RATES", rates)


def _use_up(client: APIClient, path: str, status: int = 200, **extra: str) -> None:
    for _ in range(LIMIT):
        assert client.get(path, **extra).status_code == status


@pytest.mark.django_db
def test_anonymous_callers_are_throttled_with_retry_after() -> None:
    client = APIClient()
    _use_up(client, ANON_URL, 401)

    response = client.get(ANON_URL)

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"] == "throttled"


@pytest.mark.django_db
def test_anonymous_callers_are_throttled_by_address() -> None:
    _use_up(APIClient(), ANON_URL, 401, REMOTE_ADDR="203.0.113.1")

    assert APIClient().get(ANON_URL, REMOTE_ADDR="203.0.113.2").status_code == 401


@pytest.mark.django_db
def test_anonymous_callers_cannot_dodge_the_throttle_with_x_forwarded_for() -> None:
    client = APIClient()
    for n in range(LIMIT):
        client.get(ANON_URL, REMOTE_ADDR="203.0.113.1", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    response = client.get(ANON_URL, REMOTE_ADDR="203.0.113.1", HTTP_X_FORWARDED_FOR="10.0.0.99")

    assert response.status_code == 429


@pytest.mark.django_db
def test_users_are_throttled_separately(client_as: Callable[[Role | None], APIClient]) -> None:
    first, second = client_as(Role.VIEWER), client_as(Role.VIEWER)
    _use_up(first, "/api/v1/me/")

    assert first.get("/api/v1/me/").status_code == 429
    assert second.get("/api/v1/me/").status_code == 200


@pytest.mark.django_db
def test_api_keys_are_throttled_separately(key_client: Callable[..., APIClient]) -> None:
    first, second = key_client(Role.VIEWER), key_client(Role.VIEWER)
    _use_up(first, "/api/v1/me/")

    assert first.get("/api/v1/me/").status_code == 429
    assert second.get("/api/v1/me/").status_code == 200


def _failing_keys(key_client: Callable[..., APIClient]) -> dict[str, str]:
    """A secret for each way a key fails: each is refused with 401 until the address is out."""
    known = key_client(Role.VIEWER).key_secret
    expired = key_client(Role.VIEWER).key_secret
    revoked = key_client(Role.VIEWER).key_secret
    ApiKey.objects.filter(prefix=_prefix(expired)).update(expiry_date=timezone.now() - timedelta(days=1))
    ApiKey.objects.filter(prefix=_prefix(revoked)).update(revoked=True)
    return {
        "unknown": "nosuch.secret",
        "wrong secret": f"{_prefix(known)}.wrong-secret",
        "expired": expired,
        "revoked": revoked,
        "malformed": "two words",
    }


def _prefix(secret: str) -> str:
    return secret.partition(".")[0]


def _with_key(secret: str, address: str = "203.0.113.1", **extra: str) -> APIClient:
    client = APIClient(**{"REMOTE_ADDR": address, **extra})
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["unknown", "wrong secret", "expired", "revoked", "malformed"])
def test_failed_api_keys_are_throttled_by_address(key_client: Callable[..., APIClient], how: str) -> None:
    failing = _failing_keys(key_client)[how]
    _use_up(_with_key(failing), "/api/v1/me/", 401)

    response = _with_key(failing).get("/api/v1/me/")

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"] == "throttled"
    assert _with_key(failing, "203.0.113.2").get("/api/v1/me/").status_code == 401


@pytest.mark.django_db
def test_a_valid_key_works_from_an_address_out_of_failed_attempts(
    key_client: Callable[..., APIClient],
) -> None:
    # Behind one NAT or proxy, others' failures must not lock a key's holder out.
    right = key_client(Role.VIEWER).key_secret
    _use_up(_with_key("nosuch.secret"), "/api/v1/me/", 401)
    assert _with_key("nosuch.secret").get("/api/v1/me/").status_code == 429

    assert _with_key(right).get("/api/v1/me/").status_code == 200


@pytest.mark.django_db
def test_callers_behind_one_proxy_share_an_address_but_not_a_lockout(
    key_client: Callable[..., APIClient], settings: object
) -> None:
    # A load balancer (trusted) in front of the local nginx: the client is the hop it appended.
    settings.MOC_TRUSTED_PROXIES = ["10.0.0.0/8"]
    office = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.7, 10.0.0.5"}
    elsewhere = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.8, 10.0.0.5"}
    right = key_client(Role.VIEWER).key_secret
    _use_up(_with_key("nosuch.secret", **office), "/api/v1/me/", 401)

    assert _with_key("nosuch.secret", **office).get("/api/v1/me/").status_code == 429
    assert _with_key("nosuch.secret", **elsewhere).get("/api/v1/me/").status_code == 401
    assert _with_key(right, **office).get("/api/v1/me/").status_code == 200


@pytest.mark.django_db
def test_anonymous_calls_leave_the_failed_key_budget_alone() -> None:
    _use_up(APIClient(REMOTE_ADDR="203.0.113.1"), ANON_URL, 401)
    assert APIClient(REMOTE_ADDR="203.0.113.1").get(ANON_URL).status_code == 429

    assert _with_key("nosuch.secret").get("/api/v1/me/").status_code == 401


@pytest.mark.django_db
def test_failed_keys_leave_the_anonymous_budget_alone() -> None:
    _use_up(_with_key("nosuch.secret"), "/api/v1/me/", 401)
    assert _with_key("nosuch.secret").get("/api/v1/me/").status_code == 429

    assert APIClient(REMOTE_ADDR="203.0.113.1").get(ANON_URL).status_code == 401


@pytest.mark.django_db
def test_working_api_keys_leave_the_address_budget_alone(key_client: Callable[..., APIClient]) -> None:
    for _ in range(LIMIT):
        assert _with_key(key_client(Role.VIEWER).key_secret).get("/api/v1/me/").status_code == 200

    assert _with_key("nosuch.secret").get("/api/v1/me/").status_code == 401


def _log_in(client: Client, username: str, password: str) -> object:
    return client.post("/accounts/login/", {"username": username, "password": password})


@pytest.fixture
def locked_out(make_user: Callable[..., object], settings: object) -> object:
    """A user whose password was guessed wrong as often as the limit allows."""
    user = make_user(Role.VIEWER)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _log_in(Client(), user.username, "wrong")
    return user


@pytest.mark.django_db
def test_wrong_passwords_below_the_limit_leave_the_login_open(
    make_user: Callable[..., object], settings: object
) -> None:
    user = make_user(Role.VIEWER)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _log_in(Client(), user.username, "wrong").status_code == 200

    assert _log_in(Client(), user.username, "pw-for-tests-only").status_code == 302


@pytest.mark.django_db
def test_after_the_limit_even_the_right_password_is_refused(locked_out: object) -> None:
    response = _log_in(Client(), locked_out.username, "pw-for-tests-only")

    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in response.client.session


@pytest.mark.django_db
def test_a_lockout_leaves_other_usernames_alone(locked_out: object, make_user: Callable[..., object]) -> None:
    other = make_user(Role.VIEWER)

    assert _log_in(Client(), other.username, "pw-for-tests-only").status_code == 302
