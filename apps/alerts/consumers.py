"""The bell's websocket, `/ws/alerts/`: the firing count on connect, then every alert change.

A user with a role (MocConsumer) who may view alerts (VIEW_PERM, as the pages and the API ask)
follows the `alerts` group; its messages are published, already encoded, by apps.alerts.live.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from apps.alerts import live, selectors
from apps.core.consumers import MocConsumer

# Close code for a role that may not view alerts (before the handshake, so a browser sees a refusal).
CLOSE_FORBIDDEN = 4403
VIEW_PERM = "alerts.view_alert"
COUNT = "alerts.count"


def _firing_now() -> int:
    return selectors.firing_count(now=timezone.now())


class AlertsConsumer(MocConsumer):
    """`alerts.count` ({"firing": n}) once connected, then `alerts.changed` (live.alert_payload)."""

    groups_to_join = (live.GROUP,)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(user.has_perm)(VIEW_PERM):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await super().connect()
        firing = await database_sync_to_async(_firing_now)()
        await self.send(text_data=live.encode(COUNT, {"firing": firing}))

    async def alerts_changed(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["payload"]["text"])
