"""API-key authentication: `Authorization: Bearer <key>` or `Authorization: Api-Key <key>`."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core.api.throttling import KeyFailureThrottle
from apps.core.models import ApiKey

KEYWORDS = ("bearer", "api-key")
# Writing last_used_at on every request would turn reads into writes; once a minute is enough.
_LAST_USED_RESOLUTION_S = 60


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        if keyword.lower() not in KEYWORDS:
            return None
        try:
            api_key = check_key(key.strip())
        except exceptions.AuthenticationFailed:
            # The key is checked first: a valid one is never refused for others' failures.
            throttle = KeyFailureThrottle()
            if not throttle.allow_request(request, None):
                raise exceptions.Throttled(throttle.wait()) from None
            raise
        now = timezone.now()
        if (
            api_key.last_used_at is None
            or (now - api_key.last_used_at).total_seconds() > _LAST_USED_RESOLUTION_S
        ):
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return api_key.owner, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def check_key(key: str) -> ApiKey:
    """The key the caller presented, with its owner; AuthenticationFailed saying why it is refused.
    Shared by this API and the data plane (apps.deployments.dataplane.auth)."""
    if not key or " " in key:
        raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <key>'.")
    prefix, _, _ = key.partition(".")
    api_key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    if api_key is None or not api_key.is_valid(key):
        raise exceptions.AuthenticationFailed("Unknown API key.")
    if api_key.revoked:
        raise exceptions.AuthenticationFailed("This API key was revoked.")
    if api_key.has_expired:
        raise exceptions.AuthenticationFailed("This API key has expired.")
    if not api_key.owner.is_active:
        raise exceptions.AuthenticationFailed("The owner of this API key is inactive.")
    return api_key


def note_used(key_id: int) -> None:
    """Write the key's last_used_at, unless another request did within the resolution; for callers
    that cache keys and so hold no fresh last_used_at to compare with."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=_LAST_USED_RESOLUTION_S)
    ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff), pk=key_id).update(
        last_used_at=now
    )


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.core.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from 'My API keys', sent as `Authorization: Bearer <key>`.",
        }
