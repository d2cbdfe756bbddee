"""Stored telemetry: bulk writes of each sampling window, one-minute rollups of old rows,
and pruning past the retention period.

Raw rows (one mean per device per MOC_TELEMETRY_STORE_S) are kept for
MOC_TELEMETRY_RAW_HOURS, then replaced by one row per device per minute; everything older
than MOC_TELEMETRY_RETENTION_DAYS goes. Compaction is safe to run twice or concurrently
with itself: each hour of rows is rolled up and deleted in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Min
from django.db.models.functions import TruncMinute
from django.utils import timezone

from apps.fleet.domain.history import STORED_METRICS
from apps.fleet.domain.kinds import Resolution
from apps.fleet.models import TelemetrySample

CHUNK = timedelta(hours=1)


def samples_store(*, at: datetime, means: dict[int, dict[str, float | None]]) -> int:
    """Write one raw row per device (a window's means) in one statement; rows written."""
    rows = [
        TelemetrySample(device_id=device_id, at=at, resolution_s=Resolution.RAW, **_columns(figures))
        for device_id, figures in means.items()
        if any(value is not None for value in figures.values())
    ]
    TelemetrySample.objects.bulk_create(rows)
    return len(rows)


def _columns(figures: dict[str, float | None]) -> dict[str, float | int | None]:
    """Means as the columns take them: bytes are whole numbers."""
    used = figures.get("mem_used_bytes")
    return {**figures, "mem_used_bytes": None if used is None else round(used)}


@dataclass(frozen=True, slots=True)
class Compaction:
    rolled_up: int  # raw rows replaced
    rollups: int  # one-minute rows written
    pruned: int  # rows past retention deleted


def samples_compact(*, now: datetime | None = None) -> Compaction:
    """Roll raw rows older than the raw window into minutes; delete rows past retention."""
    now = now or timezone.now()
    pruned, _ = TelemetrySample.objects.filter(
        at__lt=now - timedelta(days=settings.MOC_TELEMETRY_RETENTION_DAYS)
    ).delete()
    # Whole minutes only, so a minute is never split between a rollup and raw rows.
    cutoff = (now - timedelta(hours=settings.MOC_TELEMETRY_RAW_HOURS)).replace(second=0, microsecond=0)
    raw = TelemetrySample.objects.filter(resolution_s=Resolution.RAW)
    oldest = raw.filter(at__lt=cutoff).aggregate(at=Min("at"))["at"]
    rolled = written = 0
    while oldest is not None and oldest < cutoff:
        until = min(oldest.replace(minute=0, second=0, microsecond=0) + CHUNK, cutoff)
        done, made = _roll_up(oldest, until)
        rolled += done
        written += made
        oldest = until
    return Compaction(rolled_up=rolled, rollups=written, pruned=pruned)


@transaction.atomic
def _roll_up(start: datetime, until: datetime) -> tuple[int, int]:
    chunk = TelemetrySample.objects.filter(resolution_s=Resolution.RAW, at__gte=start, at__lt=until)
    groups = (
        chunk.annotate(minute=TruncMinute("at"))
        .values("device_id", "minute")
        .annotate(**{f"avg_{m}": Avg(m) for m in STORED_METRICS})
        .order_by()
    )
    rollups = [
        TelemetrySample(
            device_id=group["device_id"],
            at=group["minute"],
            resolution_s=Resolution.MINUTE,
            **_columns({m: group[f"avg_{m}"] for m in STORED_METRICS}),
        )
        for group in groups
    ]
    TelemetrySample.objects.bulk_create(rollups, batch_size=1000)
    deleted, _ = chunk.delete()
    return deleted, len(rollups)
