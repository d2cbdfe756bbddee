"""Websocket consumers of core. Each refuses anonymous users in connect()."""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.core import events, roles

# Close code for "not logged in" (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401


class MocConsumer(AsyncWebsocketConsumer):
    """Base: authenticated users with a role only; relays the standard envelope as JSON."""

    groups_to_join: tuple[str, ...] = ()

    async def connect(self) -> None:
        user = self.scope.get("user")
        role = await database_sync_to_async(roles.role_of)(user)
        if role is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
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
