"""Group names and publish helpers for live updates over the channel layer.

One envelope everywhere: {"type": "<kind>.<event>", "payload": {...}}; the consumer method
is the type with dots turned into underscores. A failed publish is logged, never raised:
live updates are a convenience on top of the database, which clients re-read on connect.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

# The Overview's feed of recent activity: every audited write (apps/core/audit.py).
ACTIVITY_GROUP = "activity"


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
