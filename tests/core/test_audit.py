"""The audit log: writes made during a request are recorded with who, what, how and from where.

Events are saved on commit, and pytest-django wraps each test in a transaction that never
commits, so requests run inside django_capture_on_commit_callbacks(execute=True).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from rest_framework.test import APIClient

from apps.core import services
from apps.core.domain.roles import Role
from apps.core.models import ApiKey, AuditEvent
from tests.core.factories import AuditEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_session(make_user: Callable[..., object]) -> tuple[object, APIClient]:
    user = make_user(Role.OPERATOR)
    client = APIClient()
    client.force_login(user)
    return user, client


@pytest.fixture
def capture(django_capture_on_commit_callbacks: Callable) -> Callable:
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_an_api_write_records_who_did_what_from_where(
    operator_session: tuple[object, APIClient], capture: Callable
) -> None:
    user, client = operator_session

    with capture():
        response = client.post("/api/v1/api-keys/", {"name": "ci", "role": "viewer"})

    api_key = ApiKey.objects.get(prefix=response.json()["prefix"])
    event = AuditEvent.objects.get()
    assert (event.actor, event.actor_label, event.action, event.source) == (
        user,
        user.username,
        "create",
        "api",
    )
    assert event.content_type == ContentType.objects.get_for_model(ApiKey)
    assert event.object_repr == str(api_key)
    assert (event.remote_addr, event.request_path, event.api_key_prefix) == (
        "127.0.0.1",
        "/api/v1/api-keys/",
        "",
    )


def test_an_api_write_masks_the_key_hash(
    operator_session: tuple[object, APIClient], capture: Callable
) -> None:
    _, client = operator_session

    with capture():
        client.post("/api/v1/api-keys/", {"name": "ci", "role": "viewer"})

    changes = AuditEvent.objects.get().changes
    assert changes["hashed_key"] == ["***", "***"]
    assert changes["name"] == [None, "ci"]


def test_an_api_key_event_never_reveals_the_key_hash(
    operator_session: tuple[object, APIClient], capture: Callable
) -> None:
    _, client = operator_session

    with capture():
        prefix = client.post("/api/v1/api-keys/", {"name": "ci", "role": "viewer"}).json()["prefix"]

    hashed = ApiKey.objects.get(prefix=prefix).hashed_key.split("$")[-1]
    event = AuditEvent.objects.values().get()
    assert all(hashed not in str(value) for value in event.values())


def test_an_api_key_event_object_id_fits_its_column(
    operator_session: tuple[object, APIClient], capture: Callable
) -> None:
    _, client = operator_session

    with capture():
        client.post("/api/v1/api-keys/", {"name": "ci", "role": "viewer"})

    assert len(AuditEvent.objects.get().object_id) <= AuditEvent._meta.get_field("object_id").max_length


def test_an_update_records_only_the_changed_fields(
    make_user: Callable[..., object], capture: Callable
) -> None:
    user = make_user(Role.VIEWER)
    api_key, _ = services.api_key_create(owner=user, name="ci", role=Role.VIEWER, acting_role=Role.VIEWER)
    client = Client()
    client.force_login(user)

    with capture():
        client.post(f"/api-keys/{api_key.prefix}/revoke/")

    event = AuditEvent.objects.get()
    assert (event.action, event.source, event.changes) == ("update", "page", {"revoked": [False, True]})


def test_an_admin_write_is_recorded_as_from_the_admin(
    make_user: Callable[..., object], capture: Callable
) -> None:
    admin = make_user(Role.ADMIN, is_staff=True)
    target = make_user(Role.VIEWER, username="ada")
    client = Client()
    client.force_login(admin)
    form = {
        "username": "ada",
        "first_name": "Ada",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [str(g.pk) for g in target.groups.all()],
        "date_joined_0": target.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": target.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": target.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": target.date_joined.strftime("%H:%M:%S"),
    }

    with capture():
        response = client.post(f"/admin/auth/user/{target.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="update")
    assert (event.source, event.actor, event.object_repr) == ("admin", admin, "ada")
    assert event.changes["first_name"] == ["", "Ada"]
    assert "password" not in event.changes


def test_a_key_created_on_the_my_api_keys_page_is_recorded_as_from_a_page(
    make_user: Callable[..., object], capture: Callable
) -> None:
    client = Client()
    client.force_login(make_user(Role.VIEWER))

    with capture():
        client.post("/api-keys/", {"name": "laptop", "role": "viewer"})

    event = AuditEvent.objects.get()
    assert (event.action, event.source, event.request_path) == ("create", "page", "/api-keys/")


def test_a_keyed_write_records_the_key_prefix(
    key_client: Callable[..., APIClient], capture: Callable
) -> None:
    client = key_client(Role.OPERATOR)
    prefix = client.key_secret.partition(".")[0]
    owner = ApiKey.objects.get(prefix=prefix).owner

    with capture():
        response = client.post("/api/v1/registered-models/", {"name": "child"})

    event = AuditEvent.objects.get(object_repr__startswith="child")
    assert response.status_code == 201
    assert (event.actor, event.api_key_prefix) == (owner, prefix)
    assert event.actor_label == f"{owner.username} (key {prefix})"


def test_a_login_is_recorded(make_user: Callable[..., object], capture: Callable) -> None:
    user = make_user(Role.VIEWER)

    with capture():
        response = Client().post(
            "/accounts/login/", {"username": user.username, "password": "pw-for-tests-only"}
        )

    assert response.status_code == 302
    event = AuditEvent.objects.get(action="login")
    assert (event.actor, event.source, event.object_repr) == (user, "page", user.username)


def test_a_failed_login_records_nothing(make_user: Callable[..., object], capture: Callable) -> None:
    user = make_user(Role.VIEWER)

    with capture():
        Client().post("/accounts/login/", {"username": user.username, "password": "wrong"})

    assert not AuditEvent.objects.exists()


def _create_key_from(capture: Callable, client: APIClient, **extra: str) -> AuditEvent:
    with capture():
        client.post("/api/v1/api-keys/", {"name": "ci", "role": "viewer"}, **extra)
    return AuditEvent.objects.get()


def test_x_forwarded_for_is_believed_from_the_local_proxy(
    operator_session: tuple[object, APIClient], capture: Callable
) -> None:
    event = _create_key_from(capture, operator_session[1], HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7")

    assert event.remote_addr == "203.0.113.7"


def test_x_forwarded_for_is_ignored_from_other_addresses(
    operator_session: tuple[object, APIClient], capture: Callable
) -> None:
    event = _create_key_from(
        capture, operator_session[1], REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="203.0.113.7"
    )

    assert event.remote_addr == "198.51.100.4"


def test_x_forwarded_for_is_believed_from_a_configured_proxy(
    operator_session: tuple[object, APIClient], capture: Callable, settings: object
) -> None:
    settings.MOC_TRUSTED_PROXIES = ["198.51.100.4"]

    event = _create_key_from(
        capture, operator_session[1], REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="203.0.113.7"
    )

    assert event.remote_addr == "203.0.113.7"


def test_writes_without_a_request_record_nothing(make_user: Callable[..., object], capture: Callable) -> None:
    with capture():
        api_key, _ = services.api_key_create(
            owner=make_user(Role.VIEWER), name="ci", role=Role.VIEWER, acting_role=Role.VIEWER
        )
        services.api_key_revoke(api_key=api_key)

    assert not AuditEvent.objects.exists()


def test_reading_records_nothing(operator_session: tuple[object, APIClient], capture: Callable) -> None:
    with capture():
        operator_session[1].get("/api/v1/api-keys/")
        operator_session[1].get("/api/v1/audit-events/")

    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("query", "expected"), [("action=login", {"a-login"}), ("source=admin", {"an-admin-edit"})]
)
def test_the_audit_api_filters_events(
    client_as: Callable[[Role | None], APIClient], query: str, expected: set[str]
) -> None:
    AuditEventFactory(action="login", source="page", actor_label="a-login")
    AuditEventFactory(action="update", source="admin", actor_label="an-admin-edit")
    AuditEventFactory(action="create", source="api", actor_label="an-api-create")

    results = client_as(Role.VIEWER).get(f"/api/v1/audit-events/?{query}").json()["results"]

    assert {e["actor_label"] for e in results} == expected


def test_the_audit_api_lists_newest_first(client_as: Callable[[Role | None], APIClient]) -> None:
    first = AuditEventFactory()
    second = AuditEventFactory()

    results = client_as(Role.VIEWER).get("/api/v1/audit-events/").json()["results"]

    assert [e["id"] for e in results] == [second.pk, first.pk]


def test_the_audit_page_lists_events(make_user: Callable[..., object]) -> None:
    AuditEventFactory(actor_label="grace", action="cancel", object_repr="job 42")
    client = Client()
    client.force_login(make_user(Role.VIEWER))

    page = client.get("/audit/").content.decode()

    assert "grace" in page
    assert "cancel" in page
    assert "job 42" in page


def test_the_audit_page_says_what_to_expect_when_empty(make_user: Callable[..., object]) -> None:
    client = Client()
    client.force_login(make_user(Role.VIEWER))

    page = client.get("/audit/").content.decode()

    assert "No writes recorded yet" in page


def test_the_audit_page_filters_by_source(make_user: Callable[..., object]) -> None:
    AuditEventFactory(actor_label="via-admin", source="admin")
    AuditEventFactory(actor_label="via-api", source="api")
    client = Client()
    client.force_login(make_user(Role.VIEWER))

    page = client.get("/audit/?source=admin").content.decode()

    assert "via-admin" in page
    assert "via-api" not in page
