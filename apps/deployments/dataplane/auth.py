"""Who calls the data plane: the API key of `Authorization: Bearer <key>` (or `Api-Key <key>`),
checked as the REST API checks it (core's check_key), then kept in this process.

A key found valid is cached under the SHA-256 of its text (never the text itself) for at most
MOC_DATAPLANE_CACHE_S, and forgotten at once when invalidation.py hears that keys, grants or people
changed: so a request costs a dictionary look-up, and a revoked key stops working within seconds on
every process. A key that fails is not cached: it is checked again each time, and its failures are
throttled per address by core's KeyFailureThrottle (429 past its rate), as on the REST API.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace

from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework import exceptions

from apps.core.api.authentication import KEYWORDS, check_key, note_used
from apps.core.api.permissions import key_has_perm
from apps.core.api.throttling import KeyFailureThrottle
from apps.deployments.dataplane import invalidation
from apps.deployments.domain.openai.errors import ApiError
from apps.deployments.traffic import key_deployments

# What the REST API's deployment endpoint asks of a caller (POST, as serving's InferenceView: its
# queryset is Placement): operators and admins, never more than the key's owner may.
INFER_PERM = "serving.add_placement"
# A key's last_used_at is written by this process at most this often (core's note_used also skips a
# write another process made within its resolution).
_NOTE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Caller:
    """A valid key, as the data plane needs it."""

    key_id: int
    prefix: str
    owner_id: int
    may_infer: bool  # its role and its owner both may ask deployments
    deployment_ids: frozenset[int] | None  # traffic.key_deployments: its grants; None: every one

    def may_call(self, deployment_id: int) -> bool:
        """traffic.key_may_call, on the ids read once with the key."""
        return self.deployment_ids is None or deployment_id in self.deployment_ids


_keys: dict[str, tuple[float, Caller]] = {}  # sha256 of the key -> (expires, monotonic), caller
_generation = 0  # bumped by clear(): a look-up begun before it must not fill the cache
_noted: dict[int, float] = {}  # key id -> when this process last wrote its last_used_at
_tasks: set[asyncio.Task[None]] = set()  # the writes in flight (kept referenced until done)


def clear() -> None:
    """Forget every cached key (a key, a grant, a person or a role changed)."""
    global _generation
    _generation += 1
    _keys.clear()


invalidation.on_change(invalidation.KEYS, clear)


async def authenticate(headers: Mapping[str, str], client: tuple[str, int] | None) -> Caller:
    """The caller of a request with these (lower-case) headers from this peer; ApiError 401 for no
    key or a key refused, 429 once an address's failures pass their rate."""
    keyword, _, key = headers.get("authorization", "").partition(" ")
    key = key.strip()
    if keyword.lower() not in KEYWORDS or not key:
        raise ApiError(
            401,
            "No API key: send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key" if keyword else None,
        )
    digest = hashlib.sha256(key.encode()).hexdigest()
    hit = _keys.get(digest)
    if hit is not None and hit[0] > time.monotonic():
        caller = hit[1]
    else:
        generation = _generation
        try:
            caller = await database_sync_to_async(_load)(key)
        except exceptions.AuthenticationFailed as failed:
            wait_s = await database_sync_to_async(_failure_throttled)(headers, client)
            if wait_s is not None:
                raise ApiError(
                    429,
                    "Too many failed API keys from this address; try again later.",
                    code="rate_limit_exceeded",
                    retry_after_s=max(1, round(wait_s)),
                ) from None
            raise ApiError(401, str(failed.detail), code="invalid_api_key") from None
        if generation == _generation:
            _keys[digest] = (time.monotonic() + settings.MOC_DATAPLANE_CACHE_S, caller)
    _note(caller.key_id)
    return caller


def _load(key: str) -> Caller:
    api_key = check_key(key)
    return Caller(
        key_id=api_key.pk,
        prefix=api_key.prefix,
        owner_id=api_key.owner_id,
        may_infer=key_has_perm(api_key, INFER_PERM),
        deployment_ids=key_deployments(api_key),
    )


def _failure_throttled(headers: Mapping[str, str], client: tuple[str, int] | None) -> float | None:
    """Count a failed key against its address (the REST API's KeyFailureThrottle, which reads only
    the address: the peer and X-Forwarded-For); the seconds to wait once past the rate, else None."""
    meta = {
        "REMOTE_ADDR": client[0] if client else "",
        "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", ""),
    }
    throttle = KeyFailureThrottle()
    if throttle.allow_request(SimpleNamespace(META=meta), None):
        return None
    return throttle.wait() or 1.0


def _note(key_id: int) -> None:
    """Write the key's last_used_at off the request path, at most once a minute from this process."""
    now = time.monotonic()
    if now - _noted.get(key_id, -_NOTE_EVERY_S) < _NOTE_EVERY_S:
        return
    _noted[key_id] = now
    task = asyncio.get_running_loop().create_task(database_sync_to_async(note_used)(key_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
