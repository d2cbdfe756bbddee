"""Each release's request figures in Redis: written by web processes on the request path (one round
trip, no database write), read by the canary analysis, the deployment page and /metrics.

Two shapes per release:
  moc:dfig2:<release>:total       cumulative counters (apps.deployments.domain.figures fields); a step's
                                  window is the difference between two reads of it
  moc:dfig2:<release>:<t>         the same counters for the BUCKET_S seconds starting at t, for charts

("dfig2": the finer latency buckets' layout; the coarser one's keys, "moc:dfig:", expire unread.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from apps.deployments.domain.figures import Figures, Outcome, bucket_of, count_field, sum_field, summed

PREFIX = "moc:dfig2:"
BUCKET_S = 5
# Chart buckets are kept this long; totals a week after their last request.
BUCKET_TTL_S = 3_600
TOTAL_TTL_S = 7 * 86_400


def _total_key(release_id: int) -> str:
    return f"{PREFIX}{release_id}:total"


def _bucket_key(release_id: int, start: int) -> str:
    return f"{PREFIX}{release_id}:{start}"


def record(
    client: redis.Redis, *, release_id: int, outcome: Outcome, latency_ms: float, at: float | None = None
) -> None:
    """Count one request of a release, in one round trip. Refused and rejected requests are counted
    apart, their latency nowhere: what the release took to answer or fail is what its p99 judges."""
    at = time.time() if at is None else at
    start = int(at) // BUCKET_S * BUCKET_S
    total, bucket = _total_key(release_id), _bucket_key(release_id, start)
    index = bucket_of(latency_ms)
    pipe = client.pipeline(transaction=False)
    for key, ttl in ((total, TOTAL_TTL_S), (bucket, BUCKET_TTL_S)):
        if outcome == Outcome.REFUSED:
            pipe.hincrby(key, "r", 1)
        elif outcome == Outcome.REJECTED:
            pipe.hincrby(key, "i", 1)
        else:
            pipe.hincrby(key, "n", 1)
            if outcome == Outcome.ERROR:
                pipe.hincrby(key, "e", 1)
            pipe.hincrby(key, count_field(index), 1)
            pipe.hincrbyfloat(key, sum_field(index), round(latency_ms, 3))
        pipe.expire(key, ttl)
    pipe.execute()


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
