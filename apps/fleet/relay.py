"""The telemetry relay: one Redis subscription per websocket process, fanned out in memory.

Channels' group fan-out costs a channel-layer message per client; measured here it carried
about 2.7k deliveries/s per process. Telemetry instead crosses Redis once per process: the
relay holds the only subscription to the telemetry channel and hands each message's text,
encoded once by the publisher, to every local client. Clients that asked for some devices
get the message cut down to those, encoded once per distinct subscription.

Each client has a bounded queue drained by its own task, so one slow reader never holds up
the others; when its queue overflows, what it has not read is dropped and it is told to
re-read the snapshot (`resync`), which it would also do on seeing the gap in `seq`.

Other broadcasts ride the same machinery on their own pub/sub channel: `relay(channel, stream)`
gives the loop's relay of that channel (the alerts bell, apps/alerts/live.py, is one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from apps.fleet import metrics
from apps.fleet.telemetry import CHANNEL, encode

log = logging.getLogger(__name__)

STREAM = "telemetry"
CLIENT_QUEUE = 64  # about a minute of one node's messages
RECONNECT_MAX_S = 5.0
SUBSCRIBE_WAIT_S = 5.0


def resync_text(reason: str) -> str:
    return encode({"type": "resync", "reason": reason})


class Client:
    """One websocket connection's end of the relay.

    `send` is the ASGI server's own send callable: every message costs one call into the
    server and nothing else (per-message metrics are counted per broadcast, in bulk).
    """

    def __init__(
        self,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        devices: frozenset[int] | None,
        stream: str = STREAM,
    ) -> None:
        self.send = send
        self.devices = devices  # None: every device (and every message of another stream)
        self._dropped = metrics.WS_MESSAGES_DROPPED.labels(stream=stream)
        self.queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sending; what was queued before (while the socket was being accepted) goes first."""
        self.task = asyncio.get_running_loop().create_task(self._drain())

    def offer(self, text: str) -> bool:
        """Queue `text`; False when the queue overflowed and was replaced by a resync."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            dropped = self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            self._dropped.inc(dropped + 1)
            self.queue.put_nowait(resync_text("messages dropped: the client read too slowly"))
            return False
        return True

    async def _drain(self) -> None:
        while True:
            text = await self.queue.get()
            try:
                await self.send({"type": "websocket.send", "text": text})
            except Exception:  # the socket is closing; the consumer's disconnect removes us
                return

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


def cut_to(message: dict[str, Any], devices: frozenset[int]) -> str | None:
    """A telemetry message with only `devices`, or None when it has none of them."""
    kept = [d for d in message.get("devices", ()) if d.get("id") in devices]
    if not kept:
        return None
    return encode({**message, "devices": kept})


class Relay:
    """The process's subscriber to one channel and its local clients (one per event loop)."""

    def __init__(self, url: str, channel: str = CHANNEL, stream: str = STREAM) -> None:
        self.url = url
        self.channel = channel
        self.stream = stream
        self._clients = metrics.WS_CLIENTS.labels(stream=stream)
        self._sent = metrics.WS_MESSAGES_SENT.labels(stream=stream)
        self.clients: set[Client] = set()
        self.task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def add(self, client: Client) -> None:
        self.clients.add(client)
        self._clients.inc()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the subscription is live, so a client accepted now misses nothing
        published after; False when Redis did not answer in time (the client then relies on
        the snapshot and the gap in `seq`, as after any loss)."""
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def remove(self, client: Client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self._clients.dec()
        client.close()

    def dispatch(self, text: str) -> None:
        """Hand one published message to every local client that wants it."""
        message: dict[str, Any] | None = None
        cuts: dict[frozenset[int], str | None] = {}
        queued = 0
        for client in list(self.clients):
            if client.devices is None:
                queued += client.offer(text)
                continue
            if message is None:
                message = json.loads(text)
            if message.get("type") != "telemetry":  # node.state, for everyone
                queued += client.offer(text)
                continue
            if client.devices not in cuts:
                cuts[client.devices] = cut_to(message, client.devices)
            cut = cuts[client.devices]
            if cut is not None:
                queued += client.offer(cut)
        if queued:
            self._sent.inc(queued)

    def broadcast_resync(self, reason: str) -> None:
        text = resync_text(reason)
        for client in list(self.clients):
            client.offer(text)

    async def _run(self) -> None:
        delay = 0.2
        first = True
        while self.clients:
            conn = aioredis.Redis.from_url(self.url, health_check_interval=30)
            pubsub = conn.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                if not first:
                    # Whatever was published while we were away is gone: clients re-read.
                    self.broadcast_resync("relay reconnected to Redis")
                first = False
                delay = 0.2
                while self.clients:
                    item = await pubsub.get_message(timeout=5.0)
                    if item is not None:
                        data = item["data"]
                        self.dispatch(data.decode() if isinstance(data, bytes) else data)
            except (aioredis.RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("%s relay lost Redis (%s); retrying in %.1f s", self.stream, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await conn.aclose()
        self.subscribed.clear()


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Relay]] = weakref.WeakKeyDictionary()


def relay(channel: str = CHANNEL, stream: str = STREAM) -> Relay:
    """This event loop's relay of `channel` (an ASGI server runs one loop per process); telemetry's
    unless told otherwise."""
    loop = asyncio.get_running_loop()
    relays = _relays.setdefault(loop, {})
    found = relays.get(channel)
    if found is None:
        found = relays[channel] = Relay(settings.REDIS_URL, channel, stream)
    return found
