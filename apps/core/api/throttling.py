"""Throttles: anonymous callers by address, people by user, programs by API key."""

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


class FailedKeyThrottle(AnonThrottle):
    """Failed API-key attempts count per address with anonymous calls, and an address that
    has used up that rate gets no key checked at all (429): a guesser who could still tell a
    right key from a wrong one at full speed would not be slowed down.

    Used by ApiKeyAuthentication: `allow_request` before checking a key (it records nothing),
    `record_failure` after a key failed.
    """

    checked = False

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        # Called while the request is authenticated: request.user is what is being decided.
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def throttle_success(self) -> bool:
        self.checked = True
        return True

    def record_failure(self) -> None:
        if not self.checked:  # the counters were unavailable: failing open
            return
        try:
            super().throttle_success()
        except redis.RedisError as exc:
            log.warning("throttle counters unavailable, not counting a failed API key: %s", exc)


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
