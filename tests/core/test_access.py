"""Who may see what: accounts without a role, the admin role and the admin site, audited role changes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django.test.utils import override_settings

from apps.core import audit, roles
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_logged_in_user_without_a_role_sees_no_page(client: Client, make_user) -> None:
    client.force_login(make_user(None))

    response = client.get("/jobs/")

    assert response.status_code == 403
    assert b"no role yet" in response.content


def test_a_user_without_a_role_gets_403_from_views_that_have_no_table(client: Client, make_user) -> None:
    client.force_login(make_user(None))

    assert client.get("/api/schema/").status_code == 403


def test_the_admin_role_opens_the_admin_site_without_the_staff_flag(client: Client, make_user) -> None:
    admin = make_user(Role.ADMIN)
    assert not admin.is_staff
    client.force_login(admin)

    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_other_roles_cannot_open_the_admin_site(client: Client, make_user, role: Role) -> None:
    client.force_login(make_user(role))

    response = client.get("/admin/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_giving_someone_a_role_in_the_admin_is_audited(client: Client, make_user) -> None:
    admin, someone = make_user(Role.ADMIN), make_user(None, username="newcomer")
    client.force_login(admin)
    operator_group = Group.objects.get(name="operator")

    response = client.post(
        f"/admin/auth/user/{someone.pk}/change/",
        {
            "username": "newcomer",
            "is_active": "on",
            "groups": [operator_group.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )

    assert response.status_code == 302, response.content[:2000]
    assert roles.role_of(type(someone).objects.get(pk=someone.pk)) is Role.OPERATOR
    events = AuditEvent.objects.filter(object_repr="newcomer", source="admin")
    event = next(e for e in events if "groups" in e.changes)
    assert event.changes == {"groups": {"added": ["operator"]}}
    assert event.actor == admin


def test_a_models_declared_secret_fields_never_reach_the_audit_log() -> None:
    from apps.alerts.models import NotificationChannel

    request = RequestFactory().post("/api/v1/notification-channels/", REMOTE_ADDR="127.0.0.1")
    request.user = None
    token = audit.bind_request(request)
    try:
        NotificationChannel.objects.create(
            name="pager", kind="webhook", config={"url": "https://hooks.example/T0KEN-SECRET"}
        )
    finally:
        audit.unbind_request(token)

    event = AuditEvent.objects.get()
    assert event.changes["config"] == ["***", "***"]
    assert "T0KEN-SECRET" not in str(AuditEvent.objects.values().get())


def test_an_api_keys_hash_in_a_url_is_cut_from_the_audit_log() -> None:
    path = "/admin/core/apikey/AbCd1234.sha512$$" + "ab" * 64 + "/change/"
    request = RequestFactory().post(path, REMOTE_ADDR="127.0.0.1")
    request.user = None

    audit.record("update", request=request)

    assert AuditEvent.objects.get().request_path == "/admin/core/apikey/AbCd1234…/change/"


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("127.0.0.1", "198.51.100.7", [], "198.51.100.7"),
        ("172.18.0.5", "198.51.100.7", ["172.16.0.0/12"], "198.51.100.7"),
        ("172.18.0.5", "198.51.100.7", [], "172.18.0.5"),
        ("203.0.113.9", "198.51.100.7", ["172.16.0.0/12"], "203.0.113.9"),
        ("127.0.0.1", "not-an-address", [], "127.0.0.1"),
        # A load balancer (10.0.0.5) → nginx (loopback) → gunicorn: the client is the LB's hop.
        ("127.0.0.1", "198.51.100.7, 10.0.0.5", ["10.0.0.0/8"], "198.51.100.7"),
        ("127.0.0.1", "198.51.100.7, 10.0.0.5", [], "10.0.0.5"),
        # What the client wrote itself, left of the first untrusted hop, is never believed.
        ("127.0.0.1", "203.0.113.66, 198.51.100.7, 10.0.0.5", ["10.0.0.0/8"], "198.51.100.7"),
        ("127.0.0.1", "10.0.0.6, 10.0.0.5", ["10.0.0.0/8"], "10.0.0.6"),
        ("127.0.0.1", "198.51.100.7, not-an-address, 10.0.0.5", ["10.0.0.0/8"], "10.0.0.5"),
    ],
)
def test_the_client_address_trusts_only_configured_proxies(remote, forwarded, trusted, expected) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    with override_settings(MOC_TRUSTED_PROXIES=trusted):
        assert audit.client_ip(request) == expected


def test_failed_logins_lock_out_the_caller_behind_the_proxy_not_everyone(client: Client, make_user) -> None:
    make_user(Role.VIEWER, username="victim")
    attacker = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.66"}
    for _ in range(5):
        client.post("/accounts/login/", {"username": "victim", "password": "wrong"}, **attacker)

    locked = client.post(
        "/accounts/login/", {"username": "victim", "password": "pw-for-tests-only"}, **attacker
    )
    victim = Client().post(
        "/accounts/login/",
        {"username": "victim", "password": "pw-for-tests-only"},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="198.51.100.10",
    )

    assert locked.status_code == 429
    assert victim.status_code == 302
