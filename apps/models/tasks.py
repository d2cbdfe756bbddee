"""Celery tasks of the model registry: thin wrappers over apps/models/scanning/.

All run on the default queue (the CPU worker): they read headers and hash files, nothing
that needs a GPU. Each is safe to run twice: a scan takes a lock, checksums compare
fingerprints, validation recomputes its report.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from apps.core.delivery import DurableTask
from apps.core.domain.errors import Conflict
from apps.core.domain.queues import Queue
from apps.models import messages, scanning
from apps.models.models import ModelVersion, ScanRun

log = logging.getLogger(__name__)


class ScanTask(DurableTask):
    """A scan's task: when its message is poisoned, the scan is failed, not left running."""

    def on_poisoned(self, scan_id: int, *args: Any, **kwargs: Any) -> None:
        scanning.scan_poisoned(scan_id=scan_id)


@shared_task(base=ScanTask, name=messages.REGISTRY_SCAN)
def registry_scan(scan_id: int) -> dict[str, int]:
    scan = scanning.scan_run(scan=ScanRun.objects.get(pk=scan_id))
    return {"new": scan.new, "changed": scan.changed, "unchanged": scan.unchanged, "removed": scan.removed}


@shared_task(base=DurableTask, name=messages.REGISTRY_CHECKSUM)
def registry_checksum(file_ids: list[int]) -> int:
    """Hash a chunk of files; the number whose sha256 was recorded."""
    return scanning.files_checksum(file_ids=file_ids)


@shared_task(base=DurableTask, name=messages.REGISTRY_VALIDATE)
def registry_validate(version_id: int) -> str | None:
    version = ModelVersion.objects.filter(pk=version_id).first()
    return scanning.version_validate(version=version) if version is not None else None


@shared_task(base=DurableTask, name=messages.REGISTRY_SCAN_PERIODIC, ignore_result=True)
def registry_scan_periodic() -> int | None:
    """Beat's scan (moc_site/celery.py): fails scans whose worker vanished, then starts one."""
    scanning.scans_fail_stale()
    try:
        return scanning.scan_request(user=None).pk
    except Conflict:  # one is queued or running already
        return None


@worker_ready.connect(dispatch_uid="moc-registry-first-scan")
def _first_scan(sender: Any, **kwargs: Any) -> None:
    """A fresh install scans its model roots when its first `default` worker starts, so the
    models scripts/run.sh made (manage.py models_demo) appear without waiting for beat."""
    queues = {q.name for q in sender.app.amqp.queues.consume_from.values()}
    if not settings.MOC_REGISTRY_SCAN_ON_START or Queue.DEFAULT not in queues:
        return
    try:
        if not ScanRun.objects.exists():
            scanning.scan_request(user=None)
    except Conflict:
        return
    except Exception as exc:  # the database is not there yet: beat's scan will come
        log.warning("no first registry scan: %s", exc)
