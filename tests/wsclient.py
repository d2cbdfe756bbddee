"""A websocket client that speaks ASGI straight to MOC's application, for consumer tests.

channels.testing imports daphne (for its live server), which MOC does not install, so the
socket is driven with asgiref's ApplicationCommunicator, as channels' own communicator is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.test import Client

LOCAL_ORIGIN = (b"origin", b"http://127.0.0.1")


class WebsocketCommunicator(ApplicationCommunicator):
    """A websocket client speaking ASGI to the application, like channels.testing's."""

    def __init__(
        self, app: Any, path: str, headers: list[tuple[bytes, bytes]], query_string: bytes = b""
    ) -> None:
        scope = {
            "type": "websocket",
            "path": path,
            "query_string": query_string,
            "headers": headers,
            "subprotocols": [],
        }
        super().__init__(app, scope)

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """(True, subprotocol) when accepted, (False, close code) when refused."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, response.get("subprotocol")

    async def receive_json_from(self, timeout: float = 1) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def poll_json(self, timeout: float) -> Any | None:
        """The next message, or None after `timeout`; unlike receive_output, which cancels the
        application when it times out, this leaves the socket open."""
        try:
            response = await asyncio.wait_for(self.output_queue.get(), timeout)
        except TimeoutError:
            return None
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def session_cookie(user: object) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
