"""Requests to MOC's own web tier, as a program would make them: through the deployment's
endpoint, with an API key of MOC's verification user made for one request and deleted after it.

They go to MOC_SELF_URL when it is set (where the workers reach the web tier behind the TLS proxy,
e.g. compose's http://web:8001: the operator names that address, so a key is sent there as
given, and requests carry X-Forwarded-Proto: https as the proxy's do), else to MOC_PUBLIC_URL,
where a key goes only over https or to a loopback host."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apps.core import roles, services
from apps.core.domain.roles import Role
from apps.core.models import ApiKey

# The user whose keys the checks use. MOC creates it (no usable password: nobody logs in as it)
# and gives it the operator role then; it never changes the role of an account that exists.
SYSTEM_USERNAME = "moc-verification"
# The key's role: the endpoint answers POST only to those who may add placements (as serving's
# inference endpoint: operators and admins), so a viewer key would be refused 403. Operator is
# the least role that can make the request a program makes.
KEY_ROLE = Role.OPERATOR
# How long a key outlives its request's timeout at most: it is deleted once the request ends, so
# this bounds it only if the deletion never runs (the worker died mid-request).
KEY_MARGIN = dt.timedelta(seconds=5)


class Refused(Exception):
    """Why MOC will not send a key for this request; the check fails with this line."""


def base() -> str:
    """The address the checks call MOC at."""
    return (settings.MOC_SELF_URL or settings.MOC_PUBLIC_URL).rstrip("/")


def url(path: str) -> str:
    return base() + path


def headers() -> dict[str, str]:
    """What every request to MOC carries: behind the proxy (MOC_SELF_URL), that it came over
    https, so a deployment that redirects plain http (MOC_SSL_REDIRECT) answers it."""
    return {"X-Forwarded-Proto": "https"} if settings.MOC_SELF_URL else {}


def key_problem() -> str | None:
    """Why no bearer secret may be sent to MOC's address, or None."""
    return None if settings.MOC_SELF_URL else insecure(settings.MOC_PUBLIC_URL)


def infer_path(deployment_name: str) -> str:
    return f"/api/v1/deployments/{deployment_name}/infer/"


def insecure(public_url: str) -> str | None:
    """Why a bearer key must not be sent to `public_url`, or None: it must be https, or http to
    this machine's loopback (where nothing crosses a network)."""
    parts = urlsplit(public_url)
    if parts.scheme == "https":
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme == "http":
        if host == "localhost":
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
    return (
        f"MOC_PUBLIC_URL is {public_url!r}: an API key is sent only over https, or over http to a "
        "loopback host. Set MOC_PUBLIC_URL to MOC's https:// address (or http://127.0.0.1:<port> "
        "when the workers run on MOC's machine), or MOC_SELF_URL to where the workers reach MOC's "
        "web tier on a network you trust."
    )


def _system_user() -> Any:
    """The verification user, created with the operator role when missing. An existing account of
    that name is used only while nobody can log in as it and it holds the operator role exactly:
    MOC neither promotes nor demotes someone's account."""
    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.get_or_create(
            username=SYSTEM_USERNAME, defaults={"first_name": "MOC verification"}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            roles.set_role(user, KEY_ROLE)
            return user
    if user.has_usable_password():
        raise Refused(
            f"the account '{SYSTEM_USERNAME}' has a password someone could log in with; MOC will not "
            "make keys for it. Delete the account (MOC creates it again without one) or set it an "
            "unusable password."
        )
    role = roles.role_of(user)
    if role != KEY_ROLE:
        raise Refused(
            f"the account '{SYSTEM_USERNAME}' holds the role {role or 'none'}, not {KEY_ROLE}; give "
            "it the operator role again (or delete it: MOC creates it again)."
        )
    return user


def authenticated_post(path: str, body: dict[str, Any], *, timeout_s: float, purpose: str) -> httpx.Response:
    """POST JSON to MOC's own `path` with a key of the verification user made for this request
    alone: operator-scoped (KEY_ROLE), expiring with the request's timeout, deleted after.
    Raises Refused (why no key was sent) or httpx.HTTPError."""
    if problem := key_problem():
        raise Refused(problem)
    api_key, secret = services.api_key_create(
        owner=_system_user(),
        name=purpose[:50],
        role=KEY_ROLE,
        acting_role=KEY_ROLE,
        expiry_date=timezone.now() + dt.timedelta(seconds=timeout_s) + KEY_MARGIN,
    )
    try:
        return post(path, body, timeout_s=timeout_s, secret=secret)
    finally:
        # Deleted, not revoked: a revoked row would be kept for nothing, one per run.
        ApiKey.objects.filter(pk=api_key.pk).delete()


def post(path: str, body: dict[str, Any], *, timeout_s: float, secret: str | None = None) -> httpx.Response:
    """POST JSON to MOC's own `path`, with the key `secret` as Bearer when given."""
    sent = {**headers(), **({"Authorization": f"Bearer {secret}"} if secret else {})}
    return httpx.post(url(path), json=body, headers=sent, timeout=timeout_s)


def unreachable(exc: httpx.HTTPError) -> str:
    """An HTTP error as one line naming MOC's URL."""
    return f"{base()} could not be reached: {type(exc).__name__}: {exc}"
