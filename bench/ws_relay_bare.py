"""The yardstick for MOC's telemetry socket: a bare ASGI relay with one Redis subscriber per process.

No Django and no Channels: every websocket client gets each message published on
`moc:telemetry`, as the same text, unchanged. bench/telemetry_fanout.py serves it with
uvicorn beside MOC's /ws/telemetry/, so the figures show what MOC's fan-out costs over about
the least a relay can do.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/uvicorn bench.ws_relay_bare:app --port 8010

Each client has a bounded queue drained by its own task: a client that reads too slowly loses
its own messages (the bench counts them as lost) and never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from apps.fleet.telemetry import CHANNEL

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# About 3 s of messages at 20 nodes: enough to ride out a burst, small enough that a stuck
# client costs little memory.
QUEUE_SIZE = 64
RECONNECT_DELAY_S = 1.0

log = logging.getLogger("bench.ws_relay_bare")


class Relay:
    """One Redis subscription, fanned out to this process's clients."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: set[asyncio.Queue[str]] = set()
        self.subscribed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self._relay()
            except (aioredis.ConnectionError, aioredis.TimeoutError) as error:
                self.subscribed.clear()
                log.warning("lost the Redis subscription (%s); subscribing again", error)
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def _relay(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(CHANNEL)
            self.subscribed.set()
            async for message in pubsub.listen():
                text = message["data"].decode()  # once, for every client
                for queue in self.clients:
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(text)
        finally:
            await client.aclose()


_relay: Relay | None = None


async def relay() -> Relay:
    """This process's relay, started by the first client (so it also runs with --lifespan off)."""
    global _relay
    if _relay is None:
        _relay = Relay(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    await _relay.subscribed.wait()
    return _relay


async def _drain(queue: asyncio.Queue[str], send: Send) -> None:
    with contextlib.suppress(OSError):  # the client went away; the receive loop sees it too
        while True:
            await send({"type": "websocket.send", "text": await queue.get()})


async def _websocket(receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    hub = await relay()
    await send({"type": "websocket.accept"})
    queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
    hub.clients.add(queue)
    sender = asyncio.create_task(_drain(queue, send))
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass  # clients have nothing to say to a relay
    finally:
        hub.clients.discard(queue)
        sender.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to set up: the relay starts with its first client."""
    while (await receive())["type"] == "lifespan.startup":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await _websocket(receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
