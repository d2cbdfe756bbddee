"""Roles as Django groups: which group a user is in, and the permissions each group holds.

The groups are created by migration core.0002; their permissions are re-derived after every
migrate from each model's `moc_write_role`, so a table added later gets the right
permissions without a hand-written data migration.
"""

from __future__ import annotations

import time
from typing import Any

from django.apps import apps as global_apps
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission

from apps.core.domain.roles import Role, highest, permission_codenames

_UNSET = object()


def role_of(user: AbstractBaseUser | AnonymousUser | None) -> Role | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    cached = getattr(user, "_moc_role", _UNSET)
    if cached is _UNSET:
        names = set(user.groups.values_list("name", flat=True))
        cached = highest({r for r in Role if r.value in names})
        user._moc_role = cached
    return cached


def set_role(user: AbstractBaseUser, role: Role | None) -> None:
    """Put the user in exactly one role group (or none)."""
    user.groups.remove(*Group.objects.filter(name__in=[r.value for r in Role]))
    if role is not None:
        user.groups.add(Group.objects.get(name=role.value))
    user.__dict__.pop("_moc_role", None)


def moc_app_labels() -> list[str]:
    """The app labels of MOC's own apps (settings.MOC_APPS), whose tables roles and metrics cover."""
    names = {f"apps.{app}" for app in settings.MOC_APPS}
    return [config.label for config in global_apps.get_app_configs() if config.name in names]


def _moc_models() -> list[tuple[str, str, Role | None]]:
    rows = []
    for label in moc_app_labels():
        for model in global_apps.get_app_config(label).get_models():
            write_role = getattr(model, "moc_write_role", Role.ADMIN)
            rows.append((label, model._meta.model_name, write_role))
    return rows


def sync_roles() -> None:
    """Create the role groups if needed and give each exactly its permissions over MOC's tables."""
    for config in global_apps.get_app_configs():
        create_permissions(config, verbosity=0)
    models = _moc_models()
    for role in Role:
        group, _ = Group.objects.get_or_create(name=role.value)
        wanted = set()
        for label in {m[0] for m in models}:
            pairs = [(name, write_role) for app, name, write_role in models if app == label]
            for codename in permission_codenames(role, pairs):
                wanted.add((label, codename))
        if role is Role.ADMIN:
            # Admins manage people and schedules too.
            for label, model_name in [
                ("auth", "user"),
                ("auth", "group"),
                ("django_celery_beat", "periodictask"),
                ("django_celery_beat", "crontabschedule"),
                ("django_celery_beat", "intervalschedule"),
                ("axes", "accessattempt"),
            ]:
                for verb in ("view", "add", "change", "delete"):
                    wanted.add((label, f"{verb}_{model_name}"))
        perms = [
            p
            for p in Permission.objects.select_related("content_type")
            if (p.content_type.app_label, p.codename) in wanted
        ]
        group.permissions.set(perms)


def sync_roles_after_migrate(sender: Any, **kwargs: Any) -> None:
    if sender.label == "core":
        sync_roles()
        _role_perms_cache.clear()


# Role permissions change only on migrate or by an admin's hand; a short per-process
# cache keeps API-key requests from querying them every time.
_ROLE_PERMS_TTL_S = 30.0
_role_perms_cache: dict[Role, tuple[float, frozenset[str]]] = {}


def role_perms(role: Role) -> frozenset[str]:
    now = time.monotonic()
    hit = _role_perms_cache.get(role)
    if hit and now - hit[0] < _ROLE_PERMS_TTL_S:
        return hit[1]
    perms = frozenset(
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.filter(group__name=role.value).values_list(
            "content_type__app_label", "codename"
        )
    )
    _role_perms_cache[role] = (now, perms)
    return perms
