"""What the scan's modules share: the configured roots, the one-scan-at-a-time lock, failing a
scan."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone
from redis.lock import Lock

from apps.core.domain.text import printable
from apps.core.transitions import transition
from apps.models import discovery
from apps.models.domain.states import SCAN, ScanState
from apps.models.models import ScanRun

LOCK_KEY = "moc:registry:scan"
# The lock outlives a dead worker by at most this; a live scan renews it every batch.
LOCK_TTL_S = 300
ERRORS_MAX = 200
# A queued scan or a pending version this old has probably lost its message; it is sent again.
QUEUED_RESEND_AFTER = dt.timedelta(minutes=10)


def configured_roots() -> list[str]:
    return discovery.resolve_roots(settings.MOC_MODEL_ROOTS)


def scan_fail(scan: ScanRun, why: str) -> bool:
    # `why` may quote a path from an exception's message.
    errors = [*scan.errors, {"path": "", "error": printable(why)}][-ERRORS_MAX:]
    return transition(scan, ScanState.FAILED, machine=SCAN, finished_at=timezone.now(), errors=errors)


def scan_lock(client: Any, *, wait_s: float | None = None) -> Lock:
    """The one-scan-at-a-time lock; its acquire waits up to `wait_s` (None: does not wait)."""
    if wait_s is None:
        return client.lock(LOCK_KEY, timeout=LOCK_TTL_S, blocking=False)
    return client.lock(LOCK_KEY, timeout=LOCK_TTL_S, blocking=True, blocking_timeout=wait_s)
