"""Core's pages: login everywhere, the Overview and its navigation, "My API keys", and the
ensure_admin command that makes the first login possible."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec

import django_filters
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from apps.core import roles, services
from apps.core.domain.roles import Role
from apps.core.filters import FilterSet
from apps.core.models import ApiKey
from tests.core.factories import AuditEventFactory

pytestmark = pytest.mark.django_db

NAV = ["Overview", "GPUs", "Serving", "Models", "Deployments", "Jobs", "Datasets", "Goals", "Alerts", "Audit"]


@pytest.fixture
def login_as(make_user: Callable[..., object]) -> Callable[..., tuple[object, Client]]:
    def login(role: Role, **fields: object) -> tuple[object, Client]:
        user = make_user(role, **fields)
        client = Client()
        client.force_login(user)
        return user, client

    return login


@pytest.mark.parametrize("path", ["/", "/audit/", "/api-keys/"])
def test_pages_send_anonymous_visitors_to_log_in(path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_the_login_page_is_open() -> None:
    response = Client().get("/accounts/login/")

    assert response.status_code == 200
    assert "Log in to MOC" in response.content.decode()


def test_overview_shows_the_navigation(login_as: Callable) -> None:
    _, client = login_as(Role.VIEWER)

    page = client.get("/").content.decode()

    labels = re.findall(r'<nav class="nav"[^>]*>(.*?)</nav>', page, re.S)[0]
    assert re.findall(r">([^<]+)</a>", labels) == NAV


def test_overview_hides_the_admin_link_from_non_admins(login_as: Callable) -> None:
    _, client = login_as(Role.OPERATOR)

    assert 'href="/admin/"' not in client.get("/").content.decode()


def test_overview_shows_the_admin_link_to_admins(login_as: Callable) -> None:
    _, client = login_as(Role.ADMIN)

    assert 'href="/admin/">Admin</a>' in client.get("/").content.decode()


def test_overview_lists_recent_events(login_as: Callable) -> None:
    AuditEventFactory(actor_label="grace", action="cancel", object_repr="job 42")
    _, client = login_as(Role.VIEWER)

    page = client.get("/").content.decode()

    assert "grace" in page
    assert "job 42" in page


def test_overview_says_what_to_do_when_nothing_happened_yet(login_as: Callable) -> None:
    _, client = login_as(Role.VIEWER)

    assert "No activity yet" in client.get("/").content.decode()


def test_creating_a_key_shows_its_secret_once(login_as: Callable) -> None:
    user, client = login_as(Role.OPERATOR)

    created = client.post("/api-keys/", {"name": "laptop", "role": "viewer"}).content.decode()
    reloaded = client.get("/api-keys/").content.decode()

    api_key = ApiKey.objects.get(owner=user)
    secret = re.search(r'<pre id="new-secret">([^<]+)</pre>', created).group(1)
    assert secret.startswith(api_key.prefix + ".")
    assert ApiKey.objects.key_generator.verify(secret, api_key.hashed_key)
    assert secret.partition(".")[2] not in reloaded
    assert api_key.prefix in reloaded


def test_a_key_whose_expiry_has_passed_is_refused_on_the_page(login_as: Callable) -> None:
    _, client = login_as(Role.OPERATOR)

    response = client.post(
        "/api-keys/", {"name": "laptop", "role": "viewer", "expiry_date": "2020-01-01T10:00"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "expiry_date": ["The expiry date has passed: choose a time in the future, or none."]
    }
    assert "choose a time in the future" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_keys_page_lists_only_the_users_own_keys(
    login_as: Callable, make_user: Callable[..., object]
) -> None:
    someone = make_user(Role.VIEWER)
    theirs, _ = services.api_key_create(
        owner=someone, name="theirs", role=Role.VIEWER, acting_role=Role.VIEWER
    )
    _, client = login_as(Role.ADMIN)

    page = client.get("/api-keys/").content.decode()

    assert theirs.prefix not in page
    assert "You have no API keys" in page


def test_the_revoke_button_revokes_the_key(login_as: Callable) -> None:
    user, client = login_as(Role.VIEWER)
    api_key, _ = services.api_key_create(owner=user, name="laptop", role=Role.VIEWER, acting_role=Role.VIEWER)

    response = client.post(f"/api-keys/{api_key.prefix}/revoke/", follow=True)

    assert response.redirect_chain == [("/api-keys/", 302)]
    assert ApiKey.objects.get(pk=api_key.pk).revoked is True
    assert "revoked" in response.content.decode()


def test_revoking_someone_elses_key_on_the_page_is_not_found(
    login_as: Callable, make_user: Callable[..., object]
) -> None:
    theirs, _ = services.api_key_create(
        owner=make_user(Role.VIEWER), name="theirs", role=Role.VIEWER, acting_role=Role.VIEWER
    )
    _, client = login_as(Role.ADMIN)

    response = client.post(f"/api-keys/{theirs.prefix}/revoke/")

    assert response.status_code == 404
    assert ApiKey.objects.get(pk=theirs.pk).revoked is False


def test_revoking_needs_a_post(login_as: Callable) -> None:
    user, client = login_as(Role.VIEWER)
    api_key, _ = services.api_key_create(owner=user, name="laptop", role=Role.VIEWER, acting_role=Role.VIEWER)

    assert client.get(f"/api-keys/{api_key.pk}/revoke/").status_code == 405
    assert ApiKey.objects.get(pk=api_key.pk).revoked is False


def _role_options(page: str) -> list[str]:
    select = re.search(r'<select name="role"[^>]*>(.*?)</select>', page, re.S).group(1)
    return re.findall(r'<option value="([^"]*)"', select)


@pytest.mark.parametrize(
    ("role", "offered"),
    [
        (Role.VIEWER, ["viewer"]),
        (Role.OPERATOR, ["viewer", "operator"]),
        (Role.ADMIN, ["viewer", "operator", "admin"]),
    ],
)
def test_the_role_dropdown_offers_only_roles_up_to_the_users_own(
    login_as: Callable, role: Role, offered: list[str]
) -> None:
    _, client = login_as(role)

    assert _role_options(client.get("/api-keys/").content.decode()) == offered


def test_a_forged_role_above_the_users_own_is_refused(login_as: Callable) -> None:
    _, client = login_as(Role.VIEWER)

    response = client.post("/api-keys/", {"name": "sneaky", "role": "admin"})

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.exists()


@pytest.fixture
def admin_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MOC_ADMIN_USER", "MOC_ADMIN_PASSWORD", "MOC_ADMIN_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _ensure_admin() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


def test_ensure_admin_creates_an_admin_with_a_password_printed_once(admin_env: pytest.MonkeyPatch) -> None:
    output = _ensure_admin()

    password = re.search(r"Created admin user 'admin' with password: (\S+)", output).group(1)
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(password)
    assert admin.is_superuser
    assert roles.role_of(admin) is Role.ADMIN
    assert password not in _ensure_admin()


def test_ensure_admin_uses_the_given_password(admin_env: pytest.MonkeyPatch) -> None:
    admin_env.setenv("MOC_ADMIN_USER", "root")
    admin_env.setenv("MOC_ADMIN_PASSWORD", "a-long-chosen-password")

    output = _ensure_admin()

    assert "a-long-chosen-password" not in output
    assert get_user_model().objects.get(username="root").check_password("a-long-chosen-password")


def test_ensure_admin_leaves_an_existing_admin_alone(admin_env: pytest.MonkeyPatch) -> None:
    admin_env.setenv("MOC_ADMIN_PASSWORD", "first-password-123")
    _ensure_admin()
    admin_env.setenv("MOC_ADMIN_PASSWORD", "second-password-456")

    output = _ensure_admin()

    assert "already exists" in output
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert get_user_model().objects.get(username="admin").check_password("first-password-123")


@pytest.mark.django_db
def test_the_overview_draws_its_job_chart_with_plotly_served_from_the_plotly_package(client, viewer) -> None:
    client.force_login(viewer)

    page = client.get("/").content.decode()
    script = client.get("/static/vendor/plotly.min.js")

    assert 'id="job-activity-data"' in page
    assert "/static/vendor/plotly.min.js" in page
    assert script.status_code == 200
    assert b"plotly" in b"".join(script.streaming_content)[:2000].lower()


def _filtersets() -> list[type[FilterSet]]:
    """Every app's FilterSets (each app's filters module imported, then the base's subclasses)."""
    for app in settings.MOC_APPS:
        if find_spec(f"apps.{app}.filters") is not None:
            import_module(f"apps.{app}.filters")
    return FilterSet.__subclasses__()


def test_every_filterset_of_every_app_derives_from_cores() -> None:
    for app in settings.MOC_APPS:
        if find_spec(f"apps.{app}.filters") is None:
            continue
        module = import_module(f"apps.{app}.filters")
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, django_filters.FilterSet)
                and value.__module__ == module.__name__
            ):
                assert issubclass(value, FilterSet), f"{module.__name__}.{name}"


def test_no_filter_form_says_unknown_or_dashes_for_an_unset_choice() -> None:
    for filterset in _filtersets():
        form = filterset({}, queryset=filterset._meta.model.objects.none()).form

        rendered = str(form)

        assert "Unknown" not in rendered, filterset.__name__
        assert "---------" not in rendered, filterset.__name__


def test_a_list_page_filter_bar_says_any(login_as: Callable[..., tuple[object, Client]]) -> None:
    _, client = login_as(Role.VIEWER)

    page = client.get(reverse("serving:placements")).content.decode()

    bar = page.split('<form method="get" class="filters">', 1)[1].split("</form>", 1)[0]
    assert '<option value="unknown" selected>Any</option>' in bar  # active, pinned: yes, no or any
    assert '<option value="" selected>Any</option>' in bar
