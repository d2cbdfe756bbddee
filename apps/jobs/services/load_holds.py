"""Room on a device held for a pinned serving load that asked a fine-tune there to yield
(jobs.receivers.room_wanted): the dispatcher counts those bytes as taken on that device until the
hold lapses, so the memory the fine-tune gives back waits for the load, tried again, instead of
going to whichever job waits first.

Kept in Redis, one key per device that lapses by itself (every process sees it, and nothing has to
clear it): set for queueing.LOAD_HOLD_S when the load is refused, renewed while it is refused again
and when the fine-tune yields. The load itself never reads it (serving's ledger does not count it),
so it takes the room; the hold then lapses on its own, having kept jobs off at most that long.
Without Redis there is no hold: the fine-tune that yielded still keeps out of the queue for as
long (lifecycle.job_yield), and the ledger itself never over-commits.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import redis

from apps.core.redis_clients import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "moc:jobs:load-hold:"


def _key(device_id: int) -> str:
    return f"{KEY_PREFIX}{device_id}"


def load_hold(*, device_id: int, need_bytes: int, seconds: float) -> None:
    """Hold `need_bytes` on the device for `seconds` (the larger of this and a hold already there)."""
    key = _key(device_id)
    try:
        client = redis_client()
        held = int(client.get(key) or 0)
        client.set(key, max(held, need_bytes), px=max(1, int(seconds * 1000)))
    except redis.RedisError as exc:
        log.warning("cannot hold room on device %s for a pinned load: %s", device_id, exc)


def load_hold_renew(*, device_id: int, seconds: float) -> None:
    """Start the device's hold, if it has one, over again: `seconds` from now."""
    try:
        redis_client().pexpire(_key(device_id), max(1, int(seconds * 1000)))
    except redis.RedisError as exc:
        log.warning("cannot renew the room held on device %s for a pinned load: %s", device_id, exc)


def load_holds(device_ids: Collection[int]) -> dict[int, tuple[int, float]]:
    """Per device among `device_ids` that has a hold: the bytes held and the seconds it has left.
    Empty when Redis is away."""
    ids = sorted(device_ids)
    if not ids:
        return {}
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            for pk in ids:
                pipe.get(_key(pk))
                pipe.pttl(_key(pk))
            answers = pipe.execute()
    except redis.RedisError as exc:
        log.warning("cannot read the room held for pinned loads: %s", exc)
        return {}
    holds: dict[int, tuple[int, float]] = {}
    for pk, held, ttl_ms in zip(ids, answers[::2], answers[1::2], strict=True):
        if held is not None and int(held) > 0 and ttl_ms > 0:
            holds[pk] = (int(held), ttl_ms / 1000)
    return holds


def load_hold_release(*, device_id: int) -> None:
    """Let the device's hold go: a pinned load took the room (its placement now holds it)."""
    try:
        redis_client().delete(_key(device_id))
    except redis.RedisError as exc:
        log.warning("cannot let go of the room held on device %s: %s", device_id, exc)
