"""Websocket consumers of core, and the gate every MOC consumer stands behind."""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.core import events, roles

# Close code for "not logged in" (4000-4999 are the application's own). Sent before the
# handshake is accepted, so a browser sees the server refuse it (HTTP 403) instead.
CLOSE_UNAUTHENTICATED = 4401

Message = dict[str, Any]


class RoleGatedConsumer(AsyncWebsocketConsumer):
    """Refuses a handshake from anyone without a role before Channels sets up the consumer.

    Channels gives every consumer a channel on the layer and listens on it from the start, so
    a refusal in connect() still cost Redis round trips, and with the layer unreachable it left
    a traceback in the log after the socket had closed. Here the refusal needs neither.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        first = await receive()
        if first["type"] == "websocket.connect":
            role = await database_sync_to_async(roles.role_of)(scope.get("user"))
            if role is None:
                await send({"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED})
                return
        pending = [first]

        async def receive_again() -> Message:
            return pending.pop() if pending else await receive()

        await super().__call__(scope, receive_again, send)


class MocConsumer(RoleGatedConsumer):
    """Base: users with a role only; relays the standard envelope as JSON."""

    groups_to_join: tuple[str, ...] = ()

    async def connect(self) -> None:
        for group in self.groups_to_join:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in self.groups_to_join:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def relay(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": message["type"], "payload": message["payload"]}))


class ActivityConsumer(MocConsumer):
    """The Overview's live feed of recent activity."""

    groups_to_join = (events.ACTIVITY_GROUP,)

    async def activity_event(self, message: dict[str, Any]) -> None:
        await self.relay(message)
