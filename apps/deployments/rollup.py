"""Serving figures per minute: the live 5-second buckets in Redis (apps.deployments.figures) of each
release that had traffic, rolled up into ServingMinute rows, kept MOC_SERVING_FIGURES_RETENTION_DAYS.
The deployment page's history ranges and its anomaly badge read them.

Run every minute by beat. Each run rolls up the last LOOKBACK_MINUTES complete minutes again
(update_or_create on (release, minute)), so a run that was late or missed, or a request counted a
little after its minute by a process whose clock is behind, is caught up by the next; a minute is
complete GRACE_S after it ended. Everything it reads is well inside the buckets' lifetime
(figures.BUCKET_TTL_S).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings

from apps.deployments import figures
from apps.deployments.domain.figures import summed
from apps.deployments.domain.series import Point, point_of
from apps.deployments.models import Release, ServingMinute

LOOKBACK_MINUTES = 5
GRACE_S = 10


@dataclass(frozen=True, slots=True)
class Rollup:
    minutes: int  # rows written (created or updated)
    pruned: int  # rows past retention deleted


def last_complete_minute_end(now: float) -> int:
    """The end (Unix seconds) of the latest minute the rollup takes as complete at `now`."""
    return (int(now) - GRACE_S) // 60 * 60


def minutes_roll_up(*, client: redis.Redis, now: float) -> Rollup:
    """Roll up the last LOOKBACK_MINUTES complete minutes of every release that had traffic in
    them, and prune rows past retention."""
    end = last_complete_minute_end(now)
    starts = list(range(end - LOOKBACK_MINUTES * 60, end, 60))
    active = figures.active(client, starts)
    ids = set().union(*active.values())
    releases = {r.pk: r for r in Release.objects.filter(pk__in=ids).select_related("deployment")}
    buckets = figures.series(client, releases, since=starts[0], until=end - 1)
    written = 0
    for minute in starts:
        for release_id in sorted(active[minute] & releases.keys()):
            release = releases[release_id]
            parts = (f for start, f in buckets[release_id] if minute <= start < minute + 60)
            point = point_of(summed(parts, seconds=60), t=minute, slo_p99_ms=release.deployment.slo_p99_ms)
            ServingMinute.objects.update_or_create(
                release=release,
                minute=datetime.fromtimestamp(minute, tz=UTC),
                defaults={
                    "deployment_id": release.deployment_id,
                    "version_id": release.model_version_id,
                    **_columns(point),
                },
            )
            written += 1
    cutoff = datetime.fromtimestamp(now, tz=UTC) - timedelta(days=settings.MOC_SERVING_FIGURES_RETENTION_DAYS)
    pruned, _ = ServingMinute.objects.filter(minute__lt=cutoff).delete()
    return Rollup(minutes=written, pruned=pruned)


def _columns(point: Point) -> dict[str, object]:
    return {
        "requests": point.requests + point.rejected + point.refused,
        "ok": point.ok,
        "errors": point.errors,
        "rejected": point.rejected,
        "refused": point.refused,
        "refusals": dict(point.refusals),
        "good": point.good,
        "tokens_out": point.tokens_out,
        "latency_p50_ms": point.p50_ms,
        "latency_p99_ms": point.p99_ms,
        "ttft_p50_ms": point.ttft_p50_ms,
        "ttft_p99_ms": point.ttft_p99_ms,
        "itl_p50_ms": point.itl_p50_ms,
        "itl_p99_ms": point.itl_p99_ms,
        "queue_p50_ms": point.queue_p50_ms,
        "queue_p99_ms": point.queue_p99_ms,
    }


def point_of_row(row: ServingMinute) -> Point:
    """A stored minute as a chart's point (the inverse of the rollup's columns)."""
    return Point(
        t=int(row.minute.timestamp()),
        seconds=60,
        requests=row.ok + row.errors,
        errors=row.errors,
        rejected=row.rejected,
        refused=row.refused,
        refusals=dict(row.refusals),
        good=row.good,
        tokens_out=row.tokens_out,
        p50_ms=row.latency_p50_ms,
        p99_ms=row.latency_p99_ms,
        ttft_p50_ms=row.ttft_p50_ms,
        ttft_p99_ms=row.ttft_p99_ms,
        itl_p50_ms=row.itl_p50_ms,
        itl_p99_ms=row.itl_p99_ms,
        queue_p50_ms=row.queue_p50_ms,
        queue_p99_ms=row.queue_p99_ms,
    )
