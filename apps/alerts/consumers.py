"""The bell's websocket, `/ws/alerts/`: the firing count on connect, then every batch of alert changes.

A user with a role (RoleGatedConsumer) who may view alerts (VIEW_PERM, as the pages and the API ask)
is handed to the process's relay of apps.alerts.live.CHANNEL (apps/fleet/relay.py): no channel-layer
channel, no per-client Redis traffic; each message, encoded once by apps.alerts.live, reaches every
socket of the process in memory.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.utils import timezone

from apps.alerts import live, selectors
from apps.core import events
from apps.core.consumers import RoleGatedConsumer
from apps.fleet.consumers import SERVER_SEND_KEY
from apps.fleet.relay import SUBSCRIBE_WAIT_S, Client, Relay, relay

# Close code for a role that may not view alerts (before the handshake, so a browser sees a refusal).
CLOSE_FORBIDDEN = 4403
VIEW_PERM = "alerts.view_alert"
COUNT = live.COUNT


def _firing_now() -> int:
    return selectors.firing_count(now=timezone.now())


def _relay() -> Relay:
    return relay(live.CHANNEL, live.STREAM)


class AlertsConsumer(RoleGatedConsumer):
    """`alerts.count` ({"firing": n}) once connected, then `alerts.changed` ({"firing": n, "new":
    [toasts]}, live.batch_payload); `resync` when the relay lost messages (the page reconnects)."""

    # Not on the channel layer at all: the relay carries every message.
    channel_layer_alias = "moc-alerts-use-the-relay"

    client: Client | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(user.has_perm)(VIEW_PERM):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.client = client = Client(self.scope.get(SERVER_SEND_KEY, self.base_send), None, live.STREAM)
        hub = _relay()
        hub.add(client)
        await hub.wait_subscribed(SUBSCRIBE_WAIT_S)
        # What arrived before the count is read carries an older count: the count supersedes it.
        older = client.queue.qsize()
        firing = await database_sync_to_async(_firing_now)()
        for _ in range(min(older, client.queue.qsize())):
            client.queue.get_nowait()
        await self.accept()
        await self.send(text_data=events.encode(COUNT, {"firing": firing}))
        client.start()

    async def disconnect(self, code: int) -> None:
        if self.client is not None:
            _relay().remove(self.client)
            self.client = None
