"""Group names and publish helpers for live updates over the channel layer.

One envelope everywhere: {"type": "<kind>.<event>", "payload": {...}}; the consumer method
is the type with dots turned into underscores. A failed publish is logged, never raised:
live updates are a convenience on top of the database, which clients re-read on connect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

# The Overview's feed of recent activity: every audited write (apps/core/audit.py).
ACTIVITY_GROUP = "activity"


def encode(event_type: str, payload: dict[str, Any]) -> str:
    """The envelope as compact JSON text: what a publisher that encodes once (apps.jobs.live,
    apps.alerts.live) hands every client unchanged."""
    return json.dumps({"type": event_type, "payload": payload}, separators=(",", ":"))


def publish(group: str, event_type: str, payload: dict[str, Any]) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(group, {"type": event_type, "payload": payload})
    except Exception as exc:  # the channel layer is down: the database still has the truth
        log.warning("could not publish %s to %s: %s", event_type, group, exc)
        return False
    return True


def publish_on_commit(group: str, event_type: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish(group, event_type, payload))


def round_trip(group: str, *, timeout_s: float) -> tuple[str, float]:
    """Send a message to `group` (a group of the caller's own) over the channel layer and receive
    it back: the layer's backend and the milliseconds it took. Raises when there is no layer, or
    nothing (or something else) came back within `timeout_s`: the probe of a health check."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured (CHANNEL_LAYERS)")
    token = uuid.uuid4().hex

    async def there_and_back() -> float:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            started = time.monotonic()
            await layer.group_send(group, {"type": "probe", "token": token})
            message = await asyncio.wait_for(layer.receive(channel), timeout_s)
        finally:
            await layer.group_discard(group, channel)
        if message.get("token") != token:
            raise RuntimeError(f"a message other than the one sent came back: {message!r}")
        return (time.monotonic() - started) * 1000

    return type(layer).__name__, async_to_sync(there_and_back)()
