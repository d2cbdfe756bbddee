"""Jobs' answers to what the apps below ask (apps.serving.signals), connected in JobsConfig.ready."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.jobs.domain import queueing
from apps.jobs.services.dispatcher import preempt_for

ASKED = "A fine-tune was asked to yield its memory; try again in a few seconds."
YIELDING = "A fine-tune there is yielding its memory; try again in a few seconds."


def room_wanted(sender: Any, *, need_on: Mapping[int, int], wanted_by: str, **kwargs: Any) -> str | None:
    """A pinned serving load was refused for room on the devices of `need_on`: with MOC_JOB_PREEMPT,
    ask a running fine-tune holding enough there to checkpoint and yield, by the dispatcher's own
    preemption rule, the load coming before any job. The fine-tune then keeps out of the queue for
    queueing.LOAD_HOLD_S, so the load finds the room when it is tried again. The sentence for the
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
    if done.asked is not None:
        return ASKED
    return YIELDING if done.yielding else None
