"""The web side of scanning: asking for a scan or a validation, and the reconciler that fails
scans whose worker vanished and resends ones whose message was lost."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core import dispatch, redis_clients
from apps.core.domain.errors import Conflict
from apps.models import messages
from apps.models.domain.states import SCAN_ACTIVE, ScanState
from apps.models.models import ModelVersion, ScanRun
from apps.models.scanning.base import LOCK_TTL_S, QUEUED_RESEND_AFTER, scan_fail, scan_lock


@transaction.atomic
def scan_request(*, user: Any = None) -> ScanRun:
    """Queue a scan of the configured roots; Conflict while another one is queued or running."""
    active = ScanRun.objects.filter(state__in=SCAN_ACTIVE).order_by("created_at").first()
    if active is not None:
        raise Conflict(f"Scan {active.pk} is {active.state}; a second one would walk the same files.")
    requester = user if user is not None and user.is_authenticated else None
    scan = ScanRun.objects.create(
        roots=list(settings.MOC_MODEL_ROOTS), requested_by=requester, task_id=str(uuid.uuid4())
    )
    _send_scan(scan)
    return scan


def _send_scan(scan: ScanRun) -> None:
    scan_id, task_id = scan.pk, scan.task_id
    dispatch.send_on_commit(messages.REGISTRY_SCAN, args=[scan_id], task_id=task_id)


def validation_request(*, version: ModelVersion) -> ModelVersion:
    """Queue a validation of the version (sent when the transaction commits)."""
    dispatch.send_on_commit(messages.REGISTRY_VALIDATE, args=[version.pk])
    return version


def scans_fail_stale() -> int:
    """Fail running scans whose worker vanished (their lock expired) and resend long-queued ones."""
    if scan_lock(redis_clients.redis_client()).locked():
        return 0
    old = timezone.now() - QUEUED_RESEND_AFTER
    with transaction.atomic():
        for scan in ScanRun.objects.filter(state=ScanState.QUEUED, created_at__lt=old):
            # A new task id: were the first message only slow, its delivery must not be
            # mistaken for a crashed one (apps/core/delivery.py counts by task id).
            scan.task_id = str(uuid.uuid4())
            scan.save(update_fields=["task_id", "updated_at"])
            _send_scan(scan)
    # A live scan renews the lock and touches its row every batch; a row this quiet is orphaned.
    quiet = timezone.now() - dt.timedelta(seconds=LOCK_TTL_S)
    failed = 0
    for scan in ScanRun.objects.filter(state=ScanState.RUNNING, updated_at__lt=quiet):
        failed += scan_fail(scan, "its worker stopped before the scan finished")
    return failed


def scan_poisoned(*, scan_id: int) -> None:
    """The scan's message killed its worker too often: fail the scan so that another can start."""
    scan = ScanRun.objects.filter(pk=scan_id, state__in=SCAN_ACTIVE).first()
    if scan is not None:
        scan_fail(scan, "its task was poisoned: the worker died every time it ran")
