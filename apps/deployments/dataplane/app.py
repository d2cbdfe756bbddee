"""The data plane: OpenAI's API for MOC's deployments, a raw ASGI app (no framework, no Django
request machinery) that moc_site/asgi.py mounts for HTTP paths under /v1/.

    GET  /v1/models                 the deployments the key may call
    GET  /v1/models/{name}
    POST /v1/completions            wire.Op.COMPLETE
    POST /v1/chat/completions       wire.Op.CHAT
    POST /v1/embeddings             wire.Op.EMBED

This module is the HTTP side of a request: the path and method (404, 405), the caller
(auth.py: 401, 403, 429), the body (bounded by MOC_MAX_REQUEST_BYTES: 413; JSON: 400), and the
answer, JSON or a stream of server-sent events; serve.py does the rest. Once the body is read,
the request races the client: a client that leaves cancels it, and with it the flow waiting on
the device, which gives its slot back. Anything unexpected is logged and answered 500 in OpenAI's
shape, never with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from apps.deployments.dataplane import auth, invalidation, serve
from apps.deployments.dataplane.auth import Caller
from apps.deployments.domain import openai
from apps.serving.domain import wire

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Endpoint = Callable[[Caller, dict[str, Any]], Awaitable[serve.Answer | serve.Stream]]

PREFIX = "/v1/"
_RECANCEL_S = 0.2
_MODELS = "/v1/models"
_OPS = {
    "/v1/completions": wire.Op.COMPLETE,
    "/v1/chat/completions": wire.Op.CHAT,
    "/v1/embeddings": wire.Op.EMBED,
}

log = logging.getLogger(__name__)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """One HTTP request under /v1/."""
    invalidation.listen()
    method, path = scope["method"], scope["path"]
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    try:
        endpoint, wants_body, allowed = _endpoint(method, path)
        if method != allowed:
            why = openai.ApiError(405, f"{method} is not allowed on {path}; it takes {allowed}.")
            await _answer(send, serve.error(why, (("allow", allowed),)))
            return
        caller = await auth.authenticate(headers, scope.get("client"))
        body = openai.body_of(await _body(receive, headers)) if wants_body else {}
    except openai.ApiError as err:
        await _answer(send, serve.error(err))
        return
    except _Gone:
        return
    except Exception:
        log.exception("data plane request %s %s failed", method, path)
        await _answer(send, serve.error(_internal()))
        return
    work = asyncio.ensure_future(_respond(send, endpoint, caller, body))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Let the work's clean-up (closing the device flow, giving back its slot) run to its end.
        await _ended(work)
        await _ended(gone)
    if not work.cancelled() and (failed := work.exception()) is not None:
        raise failed


async def _ended(task: asyncio.Future[None]) -> None:
    """Cancel the task and wait for it to end, cancelling it again every _RECANCEL_S while it runs:
    redis-py (8.2) loses a cancellation that lands while a command is being started (measured: the
    flow then waits out the request's whole time, holding its slot). A second one is safe: the
    flow's clean-up steps are shielded."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_S)


class _Gone(Exception):
    """The client left before its body was read: nobody is left to answer."""


def _endpoint(method: str, path: str) -> tuple[Endpoint, bool, str]:
    """The endpoint of a path, whether it reads a body, and the method it takes; ApiError 404."""
    endpoint: Endpoint
    if path == _MODELS:
        allowed, endpoint, wants_body = "GET", _models, False
    elif path.startswith(_MODELS + "/") and path[len(_MODELS) + 1 :]:
        allowed, endpoint, wants_body = "GET", _model(path[len(_MODELS) + 1 :]), False
    elif path in _OPS:
        allowed, endpoint, wants_body = "POST", _infer(_OPS[path]), True
    else:
        raise openai.ApiError(404, f"Invalid URL ({method} {path})")
    return endpoint, wants_body, allowed


async def _models(caller: Caller, body: dict[str, Any]) -> serve.Answer:
    return await serve.models(caller)


def _model(name: str) -> Endpoint:
    async def endpoint(caller: Caller, body: dict[str, Any]) -> serve.Answer:
        return await serve.model(caller, name)

    return endpoint


def _infer(op: wire.Op) -> Endpoint:
    async def endpoint(caller: Caller, body: dict[str, Any]) -> serve.Answer | serve.Stream:
        return await serve.infer(caller, body, op)

    return endpoint


async def _body(receive: Receive, headers: dict[str, str]) -> bytes:
    """The request's body, at most MOC_MAX_REQUEST_BYTES (413 past it, before reading more)."""
    limit = settings.MOC_MAX_REQUEST_BYTES
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"The body is {declared} bytes; the limit is {limit}.")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(f"The body is over the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(message: str) -> openai.ApiError:
    return openai.ApiError(413, message, type="invalid_request_error", code="request_too_large")


def _internal() -> openai.ApiError:
    return openai.ApiError(500, "The server had an error while processing your request.")


async def _respond(send: Send, endpoint: Endpoint, caller: Caller, body: dict[str, Any]) -> None:
    try:
        answer = await endpoint(caller, body)
    except openai.ApiError as err:
        answer = serve.error(err)
    except Exception:
        log.exception("data plane request failed")
        answer = serve.error(_internal())
    if isinstance(answer, serve.Answer):
        await _answer(send, answer)
        return
    try:
        await send({"type": "http.response.start", "status": 200, "headers": _encoded(answer.headers)})
        async for events in answer.events:
            await send({"type": "http.response.body", "body": events, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await answer.events.aclose()


async def _answer(send: Send, answer: serve.Answer) -> None:
    body = json.dumps(answer.body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = (("content-type", "application/json"), ("content-length", str(len(body))), *answer.headers)
    await send({"type": "http.response.start", "status": answer.status, "headers": _encoded(headers)})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _encoded(headers: serve.Headers) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1", "replace")) for name, value in headers]


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass
