"""Writes owned by core: API keys and the admin user."""

from __future__ import annotations

import datetime as dt
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.core import roles
from apps.core.domain.roles import Role
from apps.core.models import ApiKey


@transaction.atomic
def api_key_create(
    *,
    owner: AbstractBaseUser,
    name: str,
    role: Role,
    acting_role: Role | None,
    expiry_date: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is shown once and never stored.

    `acting_role` is the creator's role in this request: a key made by another key
    can have no more rights than that key.
    """
    if acting_role is None or not acting_role.covers(role):
        have = acting_role.value if acting_role else "no role"
        raise ValidationError({"role": f"A key cannot have more rights than its creator ({have})."})
    api_key, secret = ApiKey.objects.create_key(
        owner=owner, name=name, role=role.value, expiry_date=expiry_date
    )
    return api_key, secret


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if not api_key.revoked:
        api_key.revoked = True
        api_key.save(update_fields=["revoked"])
    return api_key


def admin_ensure(*, username: str, email: str, password: str | None) -> tuple[bool, str | None]:
    """Create the superuser if missing: (created, the generated password if one was made)."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return False, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    user = user_model.objects.create_superuser(username=username, email=email, password=password)
    roles.set_role(user, Role.ADMIN)
    return True, generated
