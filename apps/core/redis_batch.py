"""Several Redis commands, Lua scripts among them, in one round trip.

redis-py runs a registered script inside a pipeline only after a SCRIPT EXISTS of its own (one
more round trip on every execute). Here a script is sent by its SHA like any other command; the
rare server that lacks it (restarted, flushed) answers NOSCRIPT for that command alone, which
did not run, so it is loaded and sent again, and the commands around it are not repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

# A command as a pipeline queues it: (the client method, its arguments).
Command = tuple[str, tuple[Any, ...]]

_sources: dict[str, str] = {}  # sha1 -> a script's source, for the NOSCRIPT reload


class Lua:
    """A Lua script, called by its SHA1 (`Lua(source)(keys, args)` is the command)."""

    def __init__(self, source: str) -> None:
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)
        _sources[self.sha] = source

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Command:
        return ("evalsha", (self.sha, len(keys), *keys, *args))


def queue(pipe: Any, commands: Sequence[Command]) -> None:
    """Queue `commands` on a pipeline, sync or asyncio alike."""
    for method, args in commands:
        getattr(pipe, method)(*args)


def run(client: redis.Redis, commands: Sequence[Command], *, reload: bool = True) -> list[Any]:
    """Each command's reply, in one round trip (two when the server lacked a script, which is
    loaded and sent again once: a server that still lacks it raises NOSCRIPT)."""
    with client.pipeline(transaction=False) as pipe:
        queue(pipe, commands)
        replies = pipe.execute(raise_on_error=False)
    missing = _missing(commands, replies) if reload else []
    for sha in {commands[i][1][0] for i in missing}:
        client.script_load(_sources[sha])
    if missing:
        again = run(client, [commands[i] for i in missing], reload=False)
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return _checked(replies)


async def arun(client: redis.asyncio.Redis, commands: Sequence[Command], *, reload: bool = True) -> list[Any]:
    """run() with an asyncio client."""
    async with client.pipeline(transaction=False) as pipe:
        queue(pipe, commands)
        replies = await pipe.execute(raise_on_error=False)
    missing = _missing(commands, replies) if reload else []
    for sha in {commands[i][1][0] for i in missing}:
        await client.script_load(_sources[sha])
    if missing:
        again = await arun(client, [commands[i] for i in missing], reload=False)
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return _checked(replies)


def _missing(commands: Sequence[Command], replies: list[Any]) -> list[int]:
    return [
        i
        for i, reply in enumerate(replies)
        if isinstance(reply, redis.exceptions.NoScriptError) and commands[i][0] == "evalsha"
    ]


def _checked(replies: list[Any]) -> list[Any]:
    """The replies, once none is an error (the first one is raised)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
