"""Roles: the pure permission rules, the groups migrate creates, and role_of()."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission

from apps.core import roles
from apps.core.domain.roles import Role, highest, permission_codenames

TABLES = [("job", Role.OPERATOR), ("alertrule", Role.ADMIN), ("auditevent", None), ("apikey", Role.VIEWER)]
WRITES = ("add", "change", "delete")


def _writes(model_name: str) -> set[str]:
    return {f"{verb}_{model_name}" for verb in WRITES}


def test_roles_rank_viewer_below_operator_below_admin() -> None:
    assert Role.ADMIN.covers(Role.OPERATOR)
    assert Role.OPERATOR.covers(Role.VIEWER)
    assert not Role.VIEWER.covers(Role.OPERATOR)


def test_highest_picks_the_strongest_role_or_none() -> None:
    assert highest({Role.VIEWER, Role.ADMIN, Role.OPERATOR}) is Role.ADMIN
    assert highest(set()) is None


def test_viewer_codenames_are_views_plus_writes_to_viewer_tables() -> None:
    assert permission_codenames(Role.VIEWER, TABLES) == {
        "view_job",
        "view_alertrule",
        "view_auditevent",
        "view_apikey",
        *_writes("apikey"),
    }


def test_operator_codenames_add_writes_to_operator_tables_only() -> None:
    codenames = permission_codenames(Role.OPERATOR, TABLES)

    assert _writes("job") <= codenames
    assert not _writes("alertrule") & codenames
    assert not _writes("auditevent") & codenames


def test_admin_codenames_cover_every_write_even_system_tables() -> None:
    codenames = permission_codenames(Role.ADMIN, TABLES)

    for model_name, _ in TABLES:
        assert _writes(model_name) | {f"view_{model_name}"} <= codenames


def _group_perms(role: Role) -> set[str]:
    return {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.filter(group__name=role.value).values_list(
            "content_type__app_label", "codename"
        )
    }


def _moc_models() -> list[type]:
    return [model for label in roles.moc_app_labels() for model in apps.get_app_config(label).get_models()]


@pytest.mark.django_db
def test_migrate_creates_the_three_role_groups() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "operator", "admin"}


def test_every_moc_table_declares_who_may_write_it() -> None:
    undeclared = [model._meta.label for model in _moc_models() if "moc_write_role" not in vars(model)]

    assert undeclared == []


@pytest.mark.django_db
def test_viewer_group_may_view_every_moc_table() -> None:
    perms = _group_perms(Role.VIEWER)

    missing = [
        model._meta.label_lower
        for model in _moc_models()
        if f"{model._meta.app_label}.view_{model._meta.model_name}" not in perms
    ]
    assert missing == []


@pytest.mark.django_db
def test_viewer_group_writes_only_tables_open_to_viewers() -> None:
    open_to_viewers = {
        model._meta.model_name
        for model in _moc_models()
        if getattr(model, "moc_write_role", None) is Role.VIEWER
    }

    writes = {p for p in _group_perms(Role.VIEWER) if not p.split(".")[1].startswith("view_")}

    assert {p.split(".")[1].split("_", 1)[1] for p in writes} <= open_to_viewers
    assert "core.add_apikey" in writes


@pytest.mark.django_db
def test_operator_group_may_write_api_keys() -> None:
    assert {"core.add_apikey", "core.change_apikey", "core.delete_apikey"} <= _group_perms(Role.OPERATOR)


@pytest.mark.django_db
def test_operator_group_writes_every_operator_table_and_no_admin_table() -> None:
    perms = _group_perms(Role.OPERATOR)

    for model in _moc_models():
        write_role = getattr(model, "moc_write_role", Role.ADMIN)
        change = f"{model._meta.app_label}.change_{model._meta.model_name}"
        may = write_role is not None and Role.OPERATOR.covers(write_role)
        assert (change in perms) is may, f"{change}: write role {write_role}"


@pytest.mark.django_db
def test_only_the_admin_group_may_change_audit_events() -> None:
    holders = set(
        Group.objects.filter(
            permissions__content_type__app_label="core", permissions__codename="change_auditevent"
        ).values_list("name", flat=True)
    )

    assert holders == {"admin"}


@pytest.mark.django_db
def test_admin_group_manages_users() -> None:
    perms = _group_perms(Role.ADMIN)

    assert {"auth.view_user", "auth.add_user", "auth.change_user", "auth.delete_user"} <= perms


@pytest.mark.django_db
def test_operator_group_does_not_manage_users() -> None:
    assert "auth.change_user" not in _group_perms(Role.OPERATOR)


@pytest.mark.django_db
def test_group_permissions_come_back_after_sync_roles() -> None:
    Group.objects.get(name="operator").permissions.clear()

    roles.sync_roles()

    assert "core.add_apikey" in _group_perms(Role.OPERATOR)


@pytest.mark.django_db
def test_role_of_a_superuser_is_admin(django_user_model: type) -> None:
    user = django_user_model.objects.create_superuser(username="root", password="pw-for-tests-only")

    assert roles.role_of(user) is Role.ADMIN


@pytest.mark.django_db
def test_role_of_a_user_in_several_groups_is_the_highest(make_user: Callable[..., object]) -> None:
    user = make_user(Role.VIEWER)
    user.groups.add(Group.objects.get(name="operator"))

    assert roles.role_of(user) is Role.OPERATOR


@pytest.mark.django_db
def test_role_of_an_inactive_user_is_none(make_user: Callable[..., object]) -> None:
    user = make_user(Role.ADMIN, is_active=False)

    assert roles.role_of(user) is None


@pytest.mark.django_db
def test_role_of_a_user_without_a_group_is_none(make_user: Callable[..., object]) -> None:
    assert roles.role_of(make_user(None)) is None


def test_role_of_an_anonymous_user_is_none() -> None:
    from django.contrib.auth.models import AnonymousUser

    assert roles.role_of(AnonymousUser()) is None


@pytest.mark.django_db
def test_set_role_replaces_the_previous_role(make_user: Callable[..., object]) -> None:
    user = make_user(Role.ADMIN)

    roles.set_role(user, Role.VIEWER)

    assert set(user.groups.values_list("name", flat=True)) == {"viewer"}
    assert roles.role_of(user) is Role.VIEWER
