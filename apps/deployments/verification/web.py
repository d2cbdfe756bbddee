"""Requests to MOC's own public URL (MOC_PUBLIC_URL), as a program would make them: through the
deployment's endpoint, with a short-lived API key of MOC's verification user, revoked after."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.core import roles, services
from apps.core.domain.roles import Role

# The user whose keys the checks use: never logs in (no usable password), holds the operator role.
SYSTEM_USERNAME = "moc-verification"
# A key outlives its request by this much at most, were its revocation to fail.
KEY_LIFETIME = dt.timedelta(minutes=5)


def url(path: str) -> str:
    return settings.MOC_PUBLIC_URL.rstrip("/") + path


def infer_path(deployment_name: str) -> str:
    return f"/api/v1/deployments/{deployment_name}/infer/"


def _system_user() -> Any:
    user, created = get_user_model().objects.get_or_create(
        username=SYSTEM_USERNAME, defaults={"first_name": "MOC verification"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if roles.role_of(user) != Role.OPERATOR:
        roles.set_role(user, Role.OPERATOR)
    return user


@contextmanager
def system_key(purpose: str) -> Iterator[str]:
    """The secret of a new operator key of the verification user, revoked when the block ends."""
    api_key, secret = services.api_key_create(
        owner=_system_user(),
        name=purpose[:50],
        role=Role.OPERATOR,
        acting_role=Role.OPERATOR,
        expiry_date=timezone.now() + KEY_LIFETIME,
    )
    try:
        yield secret
    finally:
        services.api_key_revoke(api_key=api_key)


def post(path: str, body: dict[str, Any], *, timeout_s: float, secret: str | None = None) -> httpx.Response:
    """POST JSON to MOC's own `path`, with the key `secret` as Bearer when given."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.post(url(path), json=body, headers=headers, timeout=timeout_s)


def unreachable(exc: httpx.HTTPError) -> str:
    """An HTTP error as one line naming MOC's URL."""
    return f"{settings.MOC_PUBLIC_URL} could not be reached: {type(exc).__name__}: {exc}"
