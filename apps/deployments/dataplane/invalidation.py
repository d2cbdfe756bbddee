"""Telling every data-plane process that what it caches changed: keys (auth.py) or routes (routes.py).

Any process that writes a key, a grant, a person's roles, a deployment, a release or a placement
PUBLISHes what changed on one Redis channel once its transaction commits (the receivers below,
connected in DeploymentsConfig.ready); each ASGI process runs one listener task, started by its
first data-plane request and started again should Redis drop it, that clears the matching cache.
A message lost while a listener was away costs at most MOC_DATAPLANE_CACHE_S, after which every
cached entry expires anyway; a listener that (re)subscribes clears both caches, since it cannot
know what it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.core.transitions import transitioned
from apps.deployments.models import Deployment, KeyGrant, Release
from apps.serving.models import Placement, ServingProfile

CHANNEL = "moc:dataplane:changed"
KEYS, ROUTES = "keys", "routes"
# How long a listener that lost Redis waits before it subscribes again.
RETRY_S = 1.0
# How long one wait for a message lasts; between waits the connection's health is checked.
_WAIT_S = 30.0

log = logging.getLogger(__name__)

_listener: asyncio.Task[None] | None = None
_clearers: dict[str, list[Callable[[], None]]] = {KEYS: [], ROUTES: []}


def on_change(what: str, clear: Callable[[], None]) -> None:
    """Have `clear` called in this process whenever `what` (KEYS or ROUTES) changes: each cache
    registers its own, so this module knows none of them."""
    _clearers[what].append(clear)


def changed(what: str) -> None:
    """Tell every data-plane process that `what` (KEYS or ROUTES) changed, once the transaction
    (if any) commits; a Redis that cannot be reached is logged, and the caches' expiry covers it."""
    transaction.on_commit(partial(_publish, what))


def _publish(what: str) -> None:
    try:
        redis_client().publish(CHANNEL, what)
    except redis.RedisError as exc:
        log.warning(
            "data plane not told that %s changed (its caches expire in %s s): %s",
            what,
            settings.MOC_DATAPLANE_CACHE_S,
            exc,
        )


def forget(what: str) -> None:
    """Clear this process's caches of `what`: KEYS, ROUTES, or anything else for both."""
    for kind, clearers in _clearers.items():
        if what == kind or what not in _clearers:
            for clear in clearers:
                clear()


def listen() -> None:
    """Make sure this process's listener runs (cheap: called by every data-plane request)."""
    global _listener
    loop = asyncio.get_running_loop()
    if _listener is None or _listener.done() or _listener.get_loop() is not loop:
        _listener = loop.create_task(_listen(), name="dataplane-invalidation")


async def _listen() -> None:
    while True:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2.0, health_check_interval=10
        )
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(CHANNEL)
                forget("all")  # whatever changed while nobody here listened
                while True:
                    message = await pubsub.get_message(timeout=_WAIT_S)
                    if message is not None:
                        data = message["data"]
                        forget(data.decode() if isinstance(data, bytes) else str(data))
        except (redis.RedisError, OSError) as exc:
            log.warning("data plane's invalidation listener lost Redis, subscribing again: %s", exc)
            forget("all")
        finally:
            await client.aclose()
        await asyncio.sleep(RETRY_S)


# --- receivers: what changes which cache ----------------------------------------------------


def _keys_changed(sender: Any, **kwargs: Any) -> None:
    changed(KEYS)


def _routes_changed(sender: Any, **kwargs: Any) -> None:
    changed(ROUTES)


def _keys_linked(sender: Any, action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):  # each change to a relation also sends a pre_ signal
        changed(KEYS)


def _routes_linked(sender: Any, action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        changed(ROUTES)


def _person_saved(sender: Any, update_fields: frozenset[str] | None = None, **kwargs: Any) -> None:
    # A login writes last_login alone, and changes nothing a key may do.
    if update_fields is None or set(update_fields) - {"last_login"}:
        changed(KEYS)


def connect() -> None:
    """Connect the receivers (DeploymentsConfig.ready)."""
    user = get_user_model()
    for model in (ApiKey, KeyGrant):
        post_save.connect(
            _keys_changed, sender=model, dispatch_uid=f"moc-dataplane-keys-save-{model.__name__}"
        )
        post_delete.connect(
            _keys_changed, sender=model, dispatch_uid=f"moc-dataplane-keys-del-{model.__name__}"
        )
    post_save.connect(_person_saved, sender=user, dispatch_uid="moc-dataplane-person-save")
    post_delete.connect(_keys_changed, sender=user, dispatch_uid="moc-dataplane-person-del")
    for through in (user.groups.through, Group.permissions.through):
        m2m_changed.connect(
            _keys_linked, sender=through, dispatch_uid=f"moc-dataplane-keys-m2m-{through.__name__}"
        )
    for model in (Deployment, Release, Placement, ServingProfile):
        name = model.__name__
        post_save.connect(_routes_changed, sender=model, dispatch_uid=f"moc-dataplane-routes-save-{name}")
        post_delete.connect(_routes_changed, sender=model, dispatch_uid=f"moc-dataplane-routes-del-{name}")
        transitioned.connect(_routes_changed, sender=model, dispatch_uid=f"moc-dataplane-routes-move-{name}")
    m2m_changed.connect(
        _routes_linked, sender=Release.placements.through, dispatch_uid="moc-dataplane-routes-m2m"
    )
