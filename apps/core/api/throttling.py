"""Throttles: anonymous callers by address, failed API keys by address (apart), people by user,
programs by API key."""

from __future__ import annotations

import logging
from typing import Any

import redis
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from apps.core import audit
from apps.core.models import ApiKey

log = logging.getLogger(__name__)


class FailOpen:
    """Counters live in Redis; while Redis is down the API serves unthrottled rather than 500.

    /readyz reports the outage; refusing every caller would turn a lost counter into a lost API.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except redis.RedisError as exc:
            log.warning("throttle counters unavailable, not throttling: %s", exc)
            return True


class AnonThrottle(FailOpen, AnonRateThrottle):
    scope = "anon"

    def get_ident(self, request: Request) -> str:
        # DRF's default believes any X-Forwarded-For, so a caller could pick a fresh ident per request.
        return audit.client_ip(request) or ""


class KeyFailureThrottle(FailOpen, SimpleRateThrottle):
    """Failed API-key attempts (unknown, wrong, expired, revoked or malformed keys), per address,
    in their own scope: past the rate a failed attempt gets 429 instead of 401.

    Only failures count, and only after the key was checked: a valid key is never refused
    here, so others' failures behind the same NAT or proxy cannot lock its holder out. Keys
    are long random secrets, so answering a right key at any speed tells a guesser nothing.
    Anonymous calls have their own budget (AnonThrottle).

    ApiKeyAuthentication calls `allow_request` once a key has failed; it counts the failure.
    """

    scope = "api_key_failures"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": audit.client_ip(request) or ""}


class UserThrottle(FailOpen, UserRateThrottle):
    """Session users; keyed clients are counted by ApiKeyThrottle instead."""

    scope = "user"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiKey):
            return None
        return super().get_cache_key(request, view)


class ApiKeyThrottle(FailOpen, SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
