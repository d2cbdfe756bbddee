"""Serving's tasks: the work a device's worker does with placements, sent to that device's own
queue, and periodic housekeeping (scheduled in moc_site/celery.py).

The tasks a web process or the scheduler sends to a device worker are named in
apps.serving.messages, which senders use instead of importing this module."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from apps.core.delivery import DurableTask
from apps.serving import messages, placing, services
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PlacementState
from apps.serving.models import InferenceRecord, Placement
from apps.serving.worker import answering, loading


class PlacementTask(DurableTask):
    """A load or unload whose message keeps killing its worker (a model that crashes the runtime)
    fails its placement instead of looping."""

    def on_poisoned(self, placement_id: int, *args: Any, **kwargs: Any) -> None:
        placement = Placement.objects.filter(pk=placement_id).first()
        if placement is not None and placement.active:
            services.placement_move(
                placement=placement,
                to=PlacementState.FAILED,
                error_class=ErrorClass.INTERNAL,
                error="Loading or unloading it killed its worker too many times; it is not tried again.",
            )


@shared_task(base=PlacementTask, bind=True, max_retries=None, name=messages.PLACEMENT_LOAD)
def placement_load(self: PlacementTask, placement_id: int) -> str:
    """Load a placement on this device's worker; waits (retrying) for its base or for evictions."""
    outcome = loading.load(placement_id, attempt=self.request.retries)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.note


@shared_task(base=PlacementTask, name=messages.PLACEMENT_UNLOAD)
def placement_unload(placement_id: int) -> str:
    return loading.unload(placement_id)


# Not durable, not acknowledged late: a request whose worker died is answered by its caller's
# timeout, never run again behind the caller's back. `expires` (set by the sender) drops it
# unrun once nobody waits for the answer.
@shared_task(acks_late=False, ignore_result=True, name=messages.PLACEMENT_INFER)
def placement_infer(placement_id: int, request: dict[str, Any], reply_key: str) -> None:
    answer = answering.infer(placement_id, request)
    answering.reply(reply_key, answer, ttl_s=int(request.get("timeout_s") or 60) + 30)


@shared_task(acks_late=False, name=messages.DEVICE_PING)
def device_ping(reply_key: str = "") -> dict[str, Any]:
    """The cheapest round trip through a device's queue and worker: a probe of the worker, and the
    floor bench/inference_serving.py measures MOC's own cost against, answered both ways (the
    result backend, and the reply list inference uses when `reply_key` is given)."""
    answer = {"ok": True, "at": time.time()}
    if reply_key:
        answering.reply(reply_key, answer, ttl_s=60)
    return answer


@shared_task(base=DurableTask)
def placements_expire_idle() -> int:
    return placing.placements_expire_idle()


@shared_task(base=DurableTask)
def placements_reconcile() -> dict[str, int]:
    return placing.placements_reconcile()


@shared_task(base=DurableTask)
def placements_preload_by_demand() -> list[int]:
    return [p.pk for p in placing.preload_by_demand()]


@shared_task(base=DurableTask)
def inference_records_prune() -> int:
    cutoff = timezone.now() - timedelta(days=settings.MOC_INFERENCE_RETENTION_DAYS)
    deleted, _ = InferenceRecord.objects.filter(at__lt=cutoff).delete()
    return deleted
