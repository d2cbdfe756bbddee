"""Each release's request figures in Redis, never in the database: written by web processes (the REST
path one round trip per request; the data plane off its request path, summed in process and written
as a Batch every half second), read by the canary analysis, the deployment page and /metrics.

Two shapes per release:
  moc:dfig2:<release>:total       cumulative counters (apps.deployments.domain.figures fields); a step's
                                  window is the difference between two reads of it
  moc:dfig2:<release>:<t>         the same counters for the BUCKET_S seconds starting at t, for charts
                                  and the per-minute rollup (apps.deployments.rollup)
and per minute, which releases counted a request in it (the rollup's list of what to read):
  moc:dfig2:active:<minute>       a set of release ids

("dfig2": the finer latency buckets' layout; the coarser one's keys, "moc:dfig:", expire unread.)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio

from apps.core import redis_batch
from apps.core.redis_batch import Command
from apps.deployments.domain.figures import Figures, Outcome, increments, summed

PREFIX = "moc:dfig2:"
BUCKET_S = 5
# Chart buckets (and the sets of active releases) are kept this long; totals a week after their
# last request. The per-minute rollup reads the last few minutes (rollup.LOOKBACK_MINUTES), well
# inside it (tests/deployments/test_rollup.py holds it to that).
BUCKET_TTL_S = 3_600
TOTAL_TTL_S = 7 * 86_400


def _total_key(release_id: int) -> str:
    return f"{PREFIX}{release_id}:total"


def _bucket_key(release_id: int, start: int) -> str:
    return f"{PREFIX}{release_id}:{start}"


def _active_key(minute: int) -> str:
    return f"{PREFIX}active:{minute}"


class Batch:
    """Requests counted in process and written together: each key's fields summed here, so a
    batch of any size is one pipeline of a few commands per release (the data plane's counting:
    one write every half second per process, never one per request)."""

    def __init__(self) -> None:
        self._fields: dict[str, tuple[Counter[str], dict[str, float], int]] = {}  # key: counts, sums, TTL
        self._active: dict[str, set[int]] = {}  # active set's key: release ids

    def __bool__(self) -> bool:
        return bool(self._fields)

    def add(
        self,
        *,
        release_id: int,
        outcome: Outcome,
        latency_ms: float,
        ttft_ms: float | None = None,
        itl_ms: float | None = None,
        tokens_out: int = 0,
        queue_ms: float | None = None,
        refusal: str = "",
        at: float | None = None,
    ) -> None:
        """Count one request of a release (domain.figures.increments says what counts where)."""
        at = time.time() if at is None else at
        counts, sums = increments(
            outcome=outcome,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
            tokens_out=tokens_out,
            queue_ms=queue_ms,
            refusal=refusal,
        )
        start = int(at) // BUCKET_S * BUCKET_S
        for key, ttl in (
            (_total_key(release_id), TOTAL_TTL_S),
            (_bucket_key(release_id, start), BUCKET_TTL_S),
        ):
            kept_counts, kept_sums, _ = self._fields.setdefault(key, (Counter(), {}, ttl))
            kept_counts.update(counts)
            for name, ms in sums.items():
                kept_sums[name] = kept_sums.get(name, 0.0) + ms
        self._active.setdefault(_active_key(int(at) // 60 * 60), set()).add(release_id)

    def take(self) -> list[Command]:
        """The commands that write everything counted so far; the batch is empty after."""
        commands: list[Command] = []
        for key, (counts, sums, ttl) in self._fields.items():
            commands += [("hincrby", (key, name, n)) for name, n in counts.items()]
            commands += [("hincrbyfloat", (key, name, ms)) for name, ms in sums.items()]
            commands.append(("expire", (key, ttl)))
        for key, releases in self._active.items():
            commands += [("sadd", (key, *sorted(releases))), ("expire", (key, BUCKET_TTL_S))]
        self._fields, self._active = {}, {}
        return commands


def record(client: redis.Redis, **request: Any) -> None:
    """Count one request of a release now, in one round trip; `request` is Batch.add()'s keywords."""
    batch = Batch()
    batch.add(**request)
    redis_batch.run(client, batch.take())


def active(client: redis.Redis, minutes: Iterable[int]) -> dict[int, set[int]]:
    """The releases that counted a request in each minute (its start, Unix seconds)."""
    starts = list(minutes)
    pipe = client.pipeline(transaction=False)
    for minute in starts:
        pipe.smembers(_active_key(minute))
    return {m: {int(r) for r in raw} for m, raw in zip(starts, pipe.execute(), strict=True)}


def totals(client: redis.Redis, release_ids: Iterable[int]) -> dict[int, Figures]:
    """Each release's cumulative figures (zero for one never asked), in one round trip."""
    ids = list(release_ids)
    pipe = client.pipeline(transaction=False)
    for release_id in ids:
        pipe.hgetall(_total_key(release_id))
    return {rid: Figures.from_fields(raw) for rid, raw in zip(ids, pipe.execute(), strict=True)}


def series(
    client: redis.Redis, release_ids: Iterable[int], *, since: float, until: float
) -> dict[int, list[tuple[int, Figures]]]:
    """Each release's figures per BUCKET_S seconds from `since` to `until` (bucket start, figures),
    empty buckets included, in one round trip."""
    ids = list(release_ids)
    starts = list(range(int(since) // BUCKET_S * BUCKET_S, int(until) + 1, BUCKET_S))
    pipe = client.pipeline(transaction=False)
    for release_id in ids:
        for start in starts:
            pipe.hgetall(_bucket_key(release_id, start))
    raw = iter(pipe.execute())
    return {
        rid: [(start, Figures.from_fields(next(raw), seconds=BUCKET_S)) for start in starts] for rid in ids
    }


def complete_span(seconds: float, now: float) -> tuple[int, int]:
    """The whole buckets that end by `now` and cover about the last `seconds` (at least one):
    their first start and the end of the last, which is the start of the bucket still filling,
    left out so that a span's requests are never divided by seconds they were not counted in."""
    end = int(now) // BUCKET_S * BUCKET_S
    count = max(1, round(seconds / BUCKET_S))
    return end - count * BUCKET_S, end


def recent(
    client: redis.Redis, release_ids: Iterable[int], *, seconds: float, now: float
) -> tuple[dict[int, list[tuple[int, Figures]]], dict[int, Figures], int]:
    """Each release's buckets over complete_span(seconds, now), and their sum over the seconds
    they cover, in one round trip; with the span covered, in seconds."""
    since, end = complete_span(seconds, now)
    buckets = series(client, release_ids, since=since, until=end - 1)
    span = end - since
    return buckets, {rid: summed((f for _, f in parts), seconds=span) for rid, parts in buckets.items()}, span
