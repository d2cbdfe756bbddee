"""Jobs' answers to what the apps below ask (apps.serving.signals), connected in JobsConfig.ready."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from apps.jobs.domain import queueing
from apps.jobs.services.dispatcher import preempt_for
from apps.jobs.services.load_holds import load_hold, load_hold_release
from apps.serving.models import Placement

ASKED = "A fine-tune was asked to yield its memory; try again in a few seconds."
YIELDING = "A fine-tune there is yielding its memory; try again in a few seconds."


def room_wanted(sender: Any, *, need_on: Mapping[int, int], wanted_by: str, **kwargs: Any) -> str | None:
    """A pinned serving load was refused for room on the devices of `need_on`: with MOC_JOB_PREEMPT,
    ask a running fine-tune holding enough there to checkpoint and yield, by the dispatcher's own
    preemption rule, the load coming before any job. What the load needs is then held on the
    fine-tune's device for queueing.LOAD_HOLD_S (services.load_holds: no job may take it; renewed
    each time the load is refused again, and as the fine-tune yields), and the fine-tune keeps out
    of the queue as long, so the load finds the room when it is tried again. The sentence for the
    load's refusal, or None when nothing will make room."""
    if not settings.MOC_JOB_PREEMPT or not need_on:
        return None
    want = queueing.Waiting(
        id=0,
        priority=queueing.PINNED_LOAD_PRIORITY,
        queued_at=timezone.now(),
        need_bytes=max(need_on.values()),
        need_on=dict(need_on),
    )
    done = preempt_for(want, wanted_by=wanted_by, devices=need_on.keys(), hold_s=queueing.LOAD_HOLD_S)
    for device_id in done.devices:
        load_hold(device_id=device_id, need_bytes=need_on[device_id], seconds=queueing.LOAD_HOLD_S)
    if done.asked is not None:
        return ASKED
    return YIELDING if done.yielding else None


@receiver(post_save, sender=Placement, dispatch_uid="moc-jobs-pinned-load-placed")
def pinned_load_placed(sender: Any, *, instance: Placement, created: bool, **kwargs: Any) -> None:
    """A pinned load was placed: the room held on its device for it (services.load_holds) is its
    placement's now, which serving's ledger counts, so the hold goes once that is committed."""
    if created and instance.pinned and instance.device_id is not None:
        device_id = instance.device_id
        transaction.on_commit(lambda: load_hold_release(device_id=device_id))
