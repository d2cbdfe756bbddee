"""Circuit breakers per placement and bulkheads per served version, kept in Redis.

Redis rather than process memory because a placement is served by every web process at
once: one process's view of its failures, or of how many requests are in flight, would let
the fleet as a whole hammer a broken placement or overload a healthy one.

Breakers: the rules live once, in apps/serving/domain/breaker.py. A read (HGETALL) decides
most calls alone: a closed breaker admits, and an early outcome is accounted for, without a
write. A change is compare-and-set on the hash's version in one small Lua script; a writer
that lost a race gets the fresh state in the same reply and applies the rules again.

Bulkheads: slots are leases in a sorted set scored by their expiry, so a process that dies
mid-request frees its slot when the lease runs out instead of leaking it. Times inside the
scripts come from the Redis server's clock, the one clock every web process shares.

Each has a twin for the asynchronous side (the data plane: `AsyncBreakers`, `AsyncBulkhead`) over
the same keys, scripts and rules, so a request on either side counts against the same state. The
rules that need round trips are written once as plans (generators that yield each Redis call they
need and are sent its reply); a sync and an async driver run them. On the async side a call can
ride in the caller's own pipeline (AsyncBulkhead.ask/holding, Held.give_back, read_commands, and
AsyncBreakers.record's `along`), so the data plane pays one round trip where it needs several.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import redis
import redis.asyncio

from apps.core import redis_batch
from apps.core.redis_batch import Command, Lua
from apps.serving.domain import breaker as rules
from apps.serving.domain.breaker import Breaker, BreakerConfig, BreakerState
from apps.serving.domain.errors import NOT_THE_PLACEMENTS_FAULT, ErrorClass

BREAKER_PREFIX = "moc:breaker:"
BULKHEAD_PREFIX = "moc:bulkhead:"
# State of a placement nobody forgot (its process died before unloading it) goes away on its
# own a day after its last change; a day-old run of failures says nothing about now.
BREAKER_TTL_S = 86_400

T = TypeVar("T")

# Set the hash only if its version is still the one the caller read; otherwise hand back the
# hash as it is now. An absent hash is version 0 (a closed breaker with no history).
_COMPARE_AND_SET = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then
  return {0, redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'v', v + 1, unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1}
"""
# One round trip: the caller's read is still current ({1}), or here is the breaker now.
_SAME_VERSION = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v == tonumber(ARGV[1]) then
  return {1}
end
return {0, redis.call('HGETALL', KEYS[1])}
"""
_COMPARE_AND_SET_LUA, _SAME_VERSION_LUA = Lua(_COMPARE_AND_SET), Lua(_SAME_VERSION)


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    state: BreakerState
    reason: str  # why it was refused; "" when let through
    retry_after_s: float  # for the 503's Retry-After; 0 when let through
    seen: Seen  # the breaker as admission left it, with its version: record() needs no read


# A breaker as read from Redis, with the version its compare-and-set checks.
Seen = tuple[Breaker, int]


# A plan's Redis calls: (what, its arguments). Breakers: read the hash; check its version; set it.
_READ, _SAME, _SET = "read", "same", "set"
# Bulkheads: take a slot (or a place in the queue); wait on the wake list.
_ACQUIRE_CALL, _WAKE = "acquire", "wake"
_Call = tuple[str, Any]
_Plan = Generator[_Call, Any, Any]


def _run(plan: _Plan, call: Callable[[str, Any], Any]) -> Any:
    """Run a plan to its end with a synchronous client: `call(what, args)` makes each Redis call."""
    reply = None
    while True:
        try:
            what, args = plan.send(reply)
        except StopIteration as end:
            return end.value
        reply = call(what, args)


async def _arun(plan: _Plan, call: Callable[[str, Any], Awaitable[Any]], reply: Any = None) -> Any:
    """_run() with an asynchronous client; `reply` answers the call a plan already made (one
    advanced to its first call by its caller, who sent that call in its own round trip)."""
    while True:
        try:
            what, args = plan.send(reply)
        except StopIteration as end:
            return end.value
        reply = await call(what, args)


class Breakers:
    """Every placement's breaker, shared through Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def admit(
        self, placement_id: int, cfg: BreakerConfig, *, now: float, seen: Seen | None = None
    ) -> Admission:
        """Whether a request may go to the placement now. A closed breaker costs one read, none
        when the caller read it already (`seen`, from read()), and no write."""
        return _admission(self._change(placement_id, _admit_step(cfg, now), seen), cfg, now)

    def record(
        self,
        placement_id: int,
        cfg: BreakerConfig,
        *,
        now: float,
        error_class: ErrorClass | None,
        error: str = "",
        seen: Seen | None = None,
    ) -> Breaker:
        """Count a request's outcome (error_class None = success) and return the breaker after it.
        From `seen` (its admission's) it costs one round trip whatever happened meanwhile: a
        change is written by compare-and-set, and where the rule changes nothing the version is
        checked, so failures another process recorded since are still cleared by a success.

        A caller's bad request says nothing about the placement, so it counts as a success.
        """
        step = _record_step(cfg, now, error_class, error)
        return self._change(placement_id, step, seen, verify=True)[0][1]

    def read(self, placement_ids: Iterable[int]) -> dict[int, Seen]:
        """Each placement's breaker (closed when it has no state) and its version, in one round trip."""
        ids = list(placement_ids)
        return seen_from(ids, redis_batch.run(self.client, read_commands(ids)))

    def get(self, placement_ids: Iterable[int]) -> dict[int, Breaker]:
        """Each placement's breaker (closed when it has no state), in one round trip."""
        return {pid: seen[0] for pid, seen in self.read(placement_ids).items()}

    def forget(self, placement_id: int) -> None:
        """Drop a placement's breaker (it was unloaded)."""
        self.client.delete(_breaker_key(placement_id))

    def _change(
        self, placement_id: int, step: _Step, seen: Seen | None = None, *, verify: bool = False
    ) -> tuple[tuple[bool, Breaker, str], Seen]:
        key = _breaker_key(placement_id)

        def call(what: str, args: Any) -> Any:
            return redis_batch.run(self.client, [_breaker_command(key, what, args)])[0]

        return _run(_change_plan(step, seen, verify=verify), call)


class AsyncBreakers:
    """Breakers (the same Redis state, scripts and rules) for the asynchronous side."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client

    async def admit(
        self, placement_id: int, cfg: BreakerConfig, *, now: float, seen: Seen | None = None
    ) -> Admission:
        """Breakers.admit()."""
        return _admission(await self._change(placement_id, _admit_step(cfg, now), seen), cfg, now)

    async def record(
        self,
        placement_id: int,
        cfg: BreakerConfig,
        *,
        now: float,
        error_class: ErrorClass | None,
        error: str = "",
        seen: Seen | None = None,
        along: Sequence[Command] = (),
    ) -> Breaker:
        """Breakers.record(); `along` (a slot's give-back: Held.give_back()) rides in its first
        round trip."""
        step = _record_step(cfg, now, error_class, error)
        return (await self._change(placement_id, step, seen, verify=True, along=along))[0][1]

    async def read(self, placement_ids: Iterable[int]) -> dict[int, Seen]:
        """Breakers.read(): one pipelined round trip."""
        ids = list(placement_ids)
        return seen_from(ids, await redis_batch.arun(self.client, read_commands(ids)))

    async def _change(
        self,
        placement_id: int,
        step: _Step,
        seen: Seen | None = None,
        *,
        verify: bool = False,
        along: Sequence[Command] = (),
    ) -> tuple[tuple[bool, Breaker, str], Seen]:
        key = _breaker_key(placement_id)
        riding = list(along)

        async def call(what: str, args: Any) -> Any:
            replies = await redis_batch.arun(self.client, [_breaker_command(key, what, args), *riding])
            riding.clear()
            return replies[0]

        changed = await _arun(_change_plan(step, seen, verify=verify), call)
        if riding:  # the rule needed no round trip of its own
            await redis_batch.arun(self.client, riding)
        return changed


def read_commands(placement_ids: Sequence[int]) -> list[Command]:
    """The commands that read the placements' breakers (for a caller's own pipeline); their
    replies read by seen_from()."""
    return [("hgetall", (_breaker_key(pid),)) for pid in placement_ids]


def seen_from(placement_ids: Sequence[int], replies: Sequence[dict]) -> dict[int, Seen]:
    """Each placement's breaker (closed when it has no state) and its version, from
    read_commands()' replies."""
    return {pid: _decode(raw) for pid, raw in zip(placement_ids, replies, strict=True)}


def _breaker_command(key: str, what: str, args: Any) -> Command:
    """A breaker plan's call as a command."""
    if what == _READ:
        return ("hgetall", (key,))
    return (_SAME_VERSION_LUA if what == _SAME else _COMPARE_AND_SET_LUA)([key], args)


def breaker_order(
    candidates: Sequence[T], seen: dict[int, Seen], placement_id: Callable[[T], int]
) -> list[T]:
    """Closed breakers first, spread at random among them; then the others, which may let a probe by."""
    if len(candidates) == 1:
        return list(candidates)
    shuffled = random.sample(list(candidates), len(candidates))
    return sorted(shuffled, key=lambda c: seen[placement_id(c)][0].state != BreakerState.CLOSED)


# A rule of the domain module applied to a breaker: (allowed, the breaker after, why not).
_Step = Callable[[Breaker], tuple[bool, Breaker, str]]


def _admit_step(cfg: BreakerConfig, now: float) -> _Step:
    return lambda b: rules.admit(b, cfg, now)


def _record_step(cfg: BreakerConfig, now: float, error_class: ErrorClass | None, error: str) -> _Step:
    """The rule an outcome applies: a success (a caller's bad input counts as one), or a failure."""
    if error_class is None or error_class in NOT_THE_PLACEMENTS_FAULT:
        return lambda b: (True, rules.on_success(b, cfg, now), "")
    text = f"{error_class.value}: {error}" if error else error_class.value
    return lambda b: (True, rules.on_failure(b, cfg, now, text), "")


def _admission(changed: tuple[tuple[bool, Breaker, str], Seen], cfg: BreakerConfig, now: float) -> Admission:
    (allowed, after, reason), now_seen = changed
    wait = 0.0 if allowed else rules.retry_after_s(after, cfg, now)
    return Admission(ok=allowed, state=after.state, reason=reason, retry_after_s=wait, seen=now_seen)


def _change_plan(step: _Step, seen: Seen | None, *, verify: bool) -> _Plan:
    """Apply `step` to the shared breaker, starting from `seen` when the caller read it, else
    reading it; writes only on a change. With `verify`, an outcome that changes nothing is trusted
    only once the version is still `seen`'s. Returns the step's outcome and the breaker with its
    version as this left it.

    Each lost race means another writer's change landed, so the loop always ends.
    """
    checked = seen is None or not verify
    current, version = seen if seen is not None else _decode((yield _READ, None))
    while True:
        outcome = step(current)
        unchanged = outcome[1] == current
        if unchanged and checked:
            return outcome, (current, version)
        if unchanged:
            reply = yield _SAME, [version]
            checked = True
        else:
            reply = yield _SET, [version, BREAKER_TTL_S, *_encode(outcome[1])]
        if reply[0] == 1:
            return outcome, (outcome[1], version if unchanged else version + 1)
        current, version = _decode(_pairs(reply[1]))


def _breaker_key(placement_id: int) -> str:
    return f"{BREAKER_PREFIX}{placement_id}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _encode(b: Breaker) -> list[str]:
    """The hash's field/value pairs (str() of a float reads back as the same float)."""
    out: list[str] = []
    for part in fields(Breaker):
        value = getattr(b, part.name)
        out += [part.name, "" if value is None else str(value)]
    return out


def _decode(raw: dict) -> tuple[Breaker, int]:
    """A breaker and its version from the hash (closed, version 0, when there is none)."""
    values = {_text(k): _text(v) for k, v in raw.items()}
    if not values:
        return Breaker(), 0
    opened_at = values.get("opened_at", "")
    breaker = Breaker(
        state=BreakerState(values.get("state", BreakerState.CLOSED)),
        failures=int(values.get("failures", 0)),
        opened_at=float(opened_at) if opened_at else None,
        probes=int(values.get("probes", 0)),
        last_error=values.get("last_error", ""),
        opened_count=int(values.get("opened_count", 0)),
    )
    return breaker, int(values.get("v", 0))


# Shared by the bulkhead scripts: the server's clock, and leases and waiting places that ran
# out dropped, so a dead process's slot or place is never counted.
_DROP_EXPIRED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
end
"""

# KEYS: running (token -> lease expiry), waiting (token -> arrival), place expiry (token ->
# when a vanished waiter's place lapses), wake list, mean hold time.
# ARGV: token, concurrency, queue, lease_s, place_s, hops of the wake token that woke it.
# Replies {code, running, waiting, mean hold}: code 1 = slot taken, 0 = waiting, -1 = full.
# FIFO: a waiter takes a free slot only when fewer waiters are ahead of it than slots free,
# and a newcomer counts as behind every waiter. A waiter woken out of turn passes its wake
# token on (fewer hops each time, so a dead waiter at the head cannot start an endless relay).
_ACQUIRE = (
    _DROP_EXPIRED
    + """
local token, concurrency, queue = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local running = redis.call('ZCARD', KEYS[1])
local waiting = redis.call('ZCARD', KEYS[2])
local free = concurrency - running
local mean = redis.call('GET', KEYS[5])
local rank = redis.call('ZRANK', KEYS[2], token)
if not rank then
  if waiting < free then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), token)
    return {1, running + 1, waiting, mean}
  end
  if waiting < queue then
    redis.call('ZADD', KEYS[2], now, token)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), token)
    return {0, running, waiting + 1, mean}
  end
  return {-1, running, waiting, mean}
end
if rank < free then
  redis.call('ZREM', KEYS[2], token)
  redis.call('ZREM', KEYS[3], token)
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), token)
  return {1, running + 1, waiting - 1, mean}
end
local hops = tonumber(ARGV[6])
if free > 0 and hops > 1 then
  redis.call('LPUSH', KEYS[4], hops - 1)
end
return {0, running, waiting, mean}
"""
)

# KEYS as _ACQUIRE. ARGV: token, concurrency, seconds it held the slot ('' if it never did).
# Gives up whatever the token has (a slot, or a place in the queue); when that lets a waiter
# in, wakes one with as many hops as there are waiters. Replies {running, waiting, mean hold}.
_RELEASE = (
    _DROP_EXPIRED
    + """
local token, concurrency = ARGV[1], tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], token)
redis.call('ZREM', KEYS[2], token)
redis.call('ZREM', KEYS[3], token)
local mean = tonumber(redis.call('GET', KEYS[5]))
if ARGV[3] ~= '' then
  local held = tonumber(ARGV[3])
  if mean then mean = mean + 0.2 * (held - mean) else mean = held end
  redis.call('SET', KEYS[5], tostring(mean), 'EX', 86400)
end
local running = redis.call('ZCARD', KEYS[1])
local waiting = redis.call('ZCARD', KEYS[2])
if waiting > 0 and running < concurrency then
  redis.call('LPUSH', KEYS[4], waiting)
  redis.call('LTRIM', KEYS[4], 0, concurrency - 1)
  redis.call('EXPIRE', KEYS[4], 60)
end
return {running, waiting, mean and tostring(mean) or false}
"""
)

_OCCUPANCY = (
    _DROP_EXPIRED
    + """
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
"""
)
_ACQUIRE_LUA, _RELEASE_LUA, _OCCUPANCY_LUA = Lua(_ACQUIRE), Lua(_RELEASE), Lua(_OCCUPANCY)

# How long a waiter blocks on the wake list before it looks again by itself (a lease that
# expired frees a slot without anybody waking the queue).
POLL_S = 0.1
# A waiting place outlives its waiter's wait_s by this much before it is presumed abandoned.
PLACE_GRACE_S = 5.0
# The hold time assumed for Retry-After before any slot was released.
DEFAULT_HOLD_S = 1.0


class BulkheadFull(Exception):
    """No slot now and no room to wait (or the wait ran out): the caller answers 429."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class _Shape:
    """What a bulkhead is, on either side: its name, its bounds and its keys in Redis."""

    def __init__(self, name: str, *, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError(f"impossible bulkhead: concurrency {concurrency}, queue {queue}")
        self.name = name
        self.concurrency = concurrency
        self.queue = queue
        prefix = f"{BULKHEAD_PREFIX}{name}:"
        self._wake = prefix + "wake"
        self._keys = [prefix + "running", prefix + "waiting", prefix + "place", self._wake, prefix + "hold"]

    def _command(self, what: str, args: Any) -> Command:
        """A slot plan's call as a command."""
        if what == _ACQUIRE_CALL:
            return _ACQUIRE_LUA(self._keys, args)
        return ("blpop", ([self._wake], args))

    def _release_command(self, token: str, held_s: float | None) -> Command:
        return _RELEASE_LUA(self._keys, [token, self.concurrency, "" if held_s is None else repr(held_s)])


class Bulkhead(_Shape):
    """At most `concurrency` requests in flight for one served version and `queue` waiting.

    `name` keys the state in Redis and names the bulkhead in refusals ("version 12").
    """

    def __init__(self, client: redis.Redis, name: str, *, concurrency: int, queue: int) -> None:
        super().__init__(name, concurrency=concurrency, queue=queue)
        self.client = client

    @contextmanager
    def slot(self, *, wait_s: float, lease_s: float) -> Iterator[float]:
        """Hold a slot for the block; yields the seconds spent waiting for it.

        `lease_s` must outlast the request: past it the slot counts as free again.
        Raises BulkheadFull when there is no room to wait, or no slot came within `wait_s`.
        """
        token = uuid.uuid4().hex
        try:
            waited = _run(_slot_plan(self, token, wait_s=wait_s, lease_s=lease_s), self._call)
        except BulkheadFull:  # it holds nothing to give back
            raise
        except BaseException:  # interrupted while waiting, perhaps just after it got the slot
            self._give_back(token, held_s=None)
            raise
        if waited is None:
            raise _waited_out(self, wait_s, *self._give_back(token, held_s=None))
        holding_since = time.monotonic()
        try:
            yield waited
        finally:
            self._give_back(token, held_s=time.monotonic() - holding_since)

    def occupancy(self) -> tuple[int, int]:
        """(running, waiting) now; leases and places that ran out are not counted."""
        ((running, waiting),) = redis_batch.run(self.client, [_OCCUPANCY_LUA(self._keys, [])])
        return int(running), int(waiting)

    def _call(self, what: str, args: Any) -> Any:
        return redis_batch.run(self.client, [self._command(what, args)])[0]

    def _give_back(self, token: str, *, held_s: float | None) -> tuple[int, int, bytes | None]:
        return _released(redis_batch.run(self.client, [self._release_command(token, held_s)])[0])


@dataclass(slots=True)
class Asked:
    """A slot asked for (AsyncBulkhead.ask): `command`, its first try, goes in the caller's own
    round trip; AsyncBulkhead.holding() takes it on from that command's reply."""

    token: str
    wait_s: float
    command: Command
    plan: _Plan  # advanced to `command`


@dataclass(slots=True)
class Held:
    """A slot held (AsyncBulkhead.holding)."""

    waited_s: float  # spent waiting for it
    queued: bool  # it was not free at once: the caller waited in the queue
    bulkhead: AsyncBulkhead
    token: str
    since: float = field(default_factory=time.monotonic)
    given: bool = False

    def give_back(self) -> Command:
        """The command that gives the slot back, for the caller's own round trip; the block then
        leaves it be (were that round trip lost, the lease frees the slot)."""
        self.given = True
        return self.bulkhead._release_command(self.token, time.monotonic() - self.since)


class AsyncBulkhead(_Shape):
    """Bulkhead (the same Redis state, scripts and rules) for the asynchronous side."""

    def __init__(self, client: redis.asyncio.Redis, name: str, *, concurrency: int, queue: int) -> None:
        super().__init__(name, concurrency=concurrency, queue=queue)
        self.client = client

    @asynccontextmanager
    async def slot(self, *, wait_s: float, lease_s: float) -> AsyncIterator[float]:
        """Bulkhead.slot(). The slot is given back however the block ends, a cancelled task's
        included: the give-back is shielded from a second cancellation."""
        asked = self.ask(wait_s=wait_s, lease_s=lease_s)
        try:
            (first,) = await redis_batch.arun(self.client, [asked.command])
        except BaseException:
            await asyncio.shield(self.withdraw(asked))
            raise
        async with self.holding(asked, first) as held:
            yield held.waited_s

    def ask(self, *, wait_s: float, lease_s: float) -> Asked:
        """A slot asked for, its first try to be sent by the caller (with other commands, in one
        round trip), its reply handed to holding(). A caller that ends up not taking it on
        withdraw()s it."""
        token = uuid.uuid4().hex
        plan = _slot_plan(self, token, wait_s=wait_s, lease_s=lease_s)
        return Asked(token=token, wait_s=wait_s, command=self._command(*plan.send(None)), plan=plan)

    @asynccontextmanager
    async def holding(self, asked: Asked, first: Any) -> AsyncIterator[Held]:
        """slot() from `asked` whose first try answered `first`: waits its turn where it has to,
        yields the slot held, and gives it back when the block ends, unless the caller gave it
        back itself (Held.give_back())."""
        try:
            waited = await _arun(asked.plan, self._call, first)
        except BulkheadFull:
            raise
        except BaseException:
            await asyncio.shield(self.withdraw(asked))
            raise
        if waited is None:
            raise _waited_out(self, asked.wait_s, *await self._give_back(asked.token, held_s=None))
        held = Held(waited_s=waited, queued=int(first[0]) != 1, bulkhead=self, token=asked.token)
        try:
            yield held
        finally:
            if not held.given:
                await asyncio.shield(self._give_back(held.token, held_s=time.monotonic() - held.since))

    async def withdraw(self, asked: Asked) -> None:
        """Give back whatever `asked` holds (a slot, or a place in the queue; nothing is fine)."""
        await self._give_back(asked.token, held_s=None)

    async def _call(self, what: str, args: Any) -> Any:
        return (await redis_batch.arun(self.client, [self._command(what, args)]))[0]

    async def _give_back(self, token: str, *, held_s: float | None) -> tuple[int, int, bytes | None]:
        return _released((await redis_batch.arun(self.client, [self._release_command(token, held_s)]))[0])


def _slot_plan(bulkhead: _Shape, token: str, *, wait_s: float, lease_s: float) -> _Plan:
    """Take a slot for `token`: returns the seconds it waited for the slot it now holds, None when
    `wait_s` ran out first; raises BulkheadFull when there is no room to wait."""
    started = time.monotonic()
    # Someone who may not wait takes no place in the queue.
    queue = bulkhead.queue if wait_s > 0 else 0
    hops = 0
    while True:
        code, running, waiting, mean = yield (
            _ACQUIRE_CALL,
            [token, bulkhead.concurrency, queue, lease_s, wait_s + PLACE_GRACE_S, hops],
        )
        if code == 1:
            return time.monotonic() - started
        if code == -1:
            reason = _occupancy_text(bulkhead, int(running), int(waiting))
            raise BulkheadFull(reason, _retry_after_s(bulkhead, int(waiting), mean))
        remaining = wait_s - (time.monotonic() - started)
        if remaining <= 0:
            return None
        popped = yield _WAKE, min(POLL_S, remaining)
        hops = int(popped[1]) if popped else 0


def _released(reply: list) -> tuple[int, int, bytes | None]:
    running, waiting, mean = reply
    return int(running), int(waiting), mean


def _waited_out(
    bulkhead: _Shape, wait_s: float, running: int, waiting: int, mean: bytes | None
) -> BulkheadFull:
    """No slot came within `wait_s`: the refusal, with the bulkhead as giving the place back left it."""
    reason = f"waited {wait_s:g} s for a slot; {_occupancy_text(bulkhead, running, waiting)}"
    return BulkheadFull(reason, _retry_after_s(bulkhead, waiting, mean))


def _retry_after_s(bulkhead: _Shape, waiting: int, mean: bytes | str | None) -> int:
    """When a slot is likely free for a newcomer: the queue ahead of it and itself, served
    `concurrency` at a time at the recent mean hold time; at least 1 s."""
    hold_s = float(mean) if mean else DEFAULT_HOLD_S
    return max(1, math.ceil(hold_s * (waiting + 1) / bulkhead.concurrency))


def _occupancy_text(bulkhead: _Shape, running: int, waiting: int) -> str:
    requests = "request" if running == 1 else "requests"
    return f"{bulkhead.name} has {running} {requests} running and {waiting} waiting"
