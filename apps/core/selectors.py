"""Reads used by core's pages, health checks and metrics."""

from __future__ import annotations

from collections import Counter
from importlib.metadata import PackageNotFoundError, version

from django.apps import apps
from django.db import connection
from django.db.models import Count, QuerySet

from apps.core import workers
from apps.core.models import ApiKey, AuditEvent
from apps.core.roles import moc_app_labels


def moc_version() -> str:
    try:
        return version("moc")
    except PackageNotFoundError:
        return "unknown"


def live_worker_counts_by_queue() -> dict[str, int]:
    counts: Counter[str] = Counter()
    try:
        for worker in workers.live_workers():
            counts.update(worker.get("queues", []))
    except Exception:  # Redis down: /readyz reports it; metrics just show no workers
        return {}
    return dict(counts)


def state_counts() -> dict[tuple[str, str], int]:
    """Row counts by state for every MOC table that has a `state` column."""
    counts: dict[tuple[str, str], int] = {}
    for label in moc_app_labels():
        for model in apps.get_app_config(label).get_models():
            if "state" not in {f.name for f in model._meta.concrete_fields}:
                continue
            for row in model._default_manager.values("state").annotate(n=Count("pk")).order_by():
                counts[(model._meta.label_lower, row["state"])] = row["n"]
    return counts


def database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def audit_event_list() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.select_related("actor", "content_type")


def api_key_list(*, owner_id: int | None = None) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.select_related("owner")
    return keys if owner_id is None else keys.filter(owner_id=owner_id)
