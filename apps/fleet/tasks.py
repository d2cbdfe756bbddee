"""The fleet's periodic housekeeping (scheduled in moc_site/celery.py)."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from apps.core.delivery import DurableTask
from apps.fleet import registration, retention


@shared_task(base=DurableTask)
def fleet_nodes_sweep() -> list[str]:
    """Mark nodes whose heartbeat stopped offline; the names of those that went."""
    return registration.nodes_mark_offline()


@shared_task(base=DurableTask)
def fleet_telemetry_compact() -> dict[str, int]:
    return asdict(retention.samples_compact())
