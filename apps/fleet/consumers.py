"""The telemetry websocket: authenticated clients get their devices' live readings.

Messages do not come through the channel layer but through the process's relay
(apps/fleet/relay.py), which holds one Redis subscription for every client of the process.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from apps.core.consumers import RoleGatedConsumer
from apps.fleet.relay import SUBSCRIBE_WAIT_S, Client, relay

# Close code for a subscription the server cannot read.
CLOSE_BAD_REQUEST = 4400
# Where moc_site/asgi.py keeps the ASGI server's send callable in a websocket's scope.
SERVER_SEND_KEY = "moc.server_send"


def parse_devices(value: object) -> frozenset[int] | None:
    """A subscription: "all" (or nothing) means every device, else a list of device ids."""
    if value in (None, "", "all"):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError('devices must be "all" or a list of device ids')
    try:
        return frozenset(int(item) for item in items)
    except (TypeError, ValueError):
        raise ValueError('devices must be "all" or a list of device ids') from None


class TelemetryConsumer(RoleGatedConsumer):
    """`/ws/telemetry/[?devices=1,2]`: the schema is in docs/TELEMETRY.md."""

    # Not on the channel layer at all: no per-client channel, no per-client Redis traffic.
    channel_layer_alias = "moc-telemetry-uses-the-relay"

    client: Client | None = None

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            devices = parse_devices(query.get("devices", [None])[-1])
        except ValueError:
            # Accepted first: a close before the handshake reaches the client as an HTTP 403
            # and the code is lost, while this one it can read and act on.
            await self.accept()
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        # The server's own send, not Channels' session-saving wrapper around it: the relay
        # sends tens of thousands of messages a second, and the wrapper cost ~7% of that CPU.
        self.client = Client(self.scope.get(SERVER_SEND_KEY, self.base_send), devices)
        hub = relay()
        hub.add(self.client)
        await hub.wait_subscribed(SUBSCRIBE_WAIT_S)
        await self.accept()
        self.client.start()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        usage = 'send {"type": "subscribe", "devices": "all" | [device ids]}'
        try:
            request = json.loads(text_data or "")
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to decode
            request = None
        if not isinstance(request, dict) or request.get("type") != "subscribe":
            await self.send(text_data=json.dumps({"type": "error", "detail": f"Not understood: {usage}"}))
            return
        try:
            devices = parse_devices(request.get("devices", "all"))
        except ValueError as exc:
            await self.send(text_data=json.dumps({"type": "error", "detail": f"{exc}: {usage}"}))
            return
        if self.client is not None:
            self.client.devices = devices
            shown = "all" if devices is None else sorted(devices)
            await self.send(text_data=json.dumps({"type": "subscribed", "devices": shown}))

    async def disconnect(self, code: int) -> None:
        if self.client is not None:
            relay().remove(self.client)
            self.client = None
