"""Periodic placement housekeeping (beat): keep-alive and the reaper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.dispatch import receiver
from django.utils import timezone

from apps.core import dispatch, outbox
from apps.core.workers import live_queues, queue_silence
from apps.fleet.models import Device
from apps.serving import messages, services
from apps.serving.domain.states import PLACEMENT_ACTIVE, PLACEMENT_ON_WORKER, PlacementState
from apps.serving.models import Placement
from apps.serving.placing.recovery import worker_silence
from apps.serving.placing.unload import placement_unload, send_on_commit

P = PlacementState


def placements_expire_idle(*, now: float | None = None) -> int:
    """Unload placements unused past their keep-alive (pinned ones and bases of live adapters stay)."""
    moment = timezone.now() if now is None else datetime.fromtimestamp(now, tz=UTC)
    count = 0
    loaded = Placement.objects.filter(state=P.LOADED, pinned=False).exclude(
        pk__in=Placement.objects.filter(state__in=PLACEMENT_ACTIVE, depends_on__isnull=False).values(
            "depends_on_id"
        )
    )
    for p in loaded.select_related("device__node", "version__model"):
        last = p.last_used_at or p.loaded_at or p.created_at
        idle_s = (moment - last).total_seconds()
        if idle_s >= p.keep_alive_s and placement_unload(
            placement=p, reason=f"unused for {int(idle_s)} s (keep-alive {p.keep_alive_s} s)"
        ):
            count += 1
    return count


def placements_reconcile(*, now: float | None = None) -> dict[str, int]:
    """The reaper, so nothing stays requested, loading or unloading forever and what it held is
    freed: placements whose worker is gone are LOST; requests no worker took in time, and loads
    that never finished, FAILED; unloads that did not end are sent again."""
    moment = timezone.now() if now is None else datetime.fromtimestamp(now, tz=UTC)
    try:
        alive = live_queues()
    except redis.RedisError:
        alive = set()
    counts = {"lost": 0, "failed": 0, "unloads_resent": 0}
    # The reaper runs on a `default` worker, which keeps a heartbeat too: without that one the
    # heartbeats are not to be trusted (Redis restarted moments ago and they are coming back).
    if settings.CELERY_TASK_DEFAULT_QUEUE in alive:
        grace = timedelta(seconds=settings.MOC_WORKER_SILENT_AFTER_S)
        on_worker = Placement.objects.filter(state__in=PLACEMENT_ON_WORKER, updated_at__lt=moment - grace)
        why: dict[str, str] = {}
        for p in on_worker.select_related("device__node"):
            if p.device.queue in alive:
                continue
            if p.device.queue not in why:
                why[p.device.queue] = _worker_gone(p.device, moment.timestamp())
            if services.placement_move(
                placement=p, to=P.LOST, error_class="device_lost", error=f"Lost: {why[p.device.queue]}."
            ):
                counts["lost"] += 1
    # Requests count from when their load message was sent (placement_load_sent), loads from their
    # move to LOADING: both their last update. A request whose message still waits in the outbox
    # (the broker was away) is not late; read before the placements, as a send updates its
    # placement before its outbox row goes.
    unsent = outbox.waiting_args(messages.PLACEMENT_LOAD)
    stale = [
        (
            P.REQUESTED,
            "updated_at",
            settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S,
            "No worker took it within {} s.",
        ),
        (
            P.LOADING,
            "updated_at",
            settings.MOC_PLACEMENT_LOAD_TIMEOUT_S,
            "Still loading after {} s; given up.",
        ),
    ]
    for state, since, limit_s, error in stale:
        cutoff = moment - timedelta(seconds=limit_s)
        for p in Placement.objects.filter(state=state, **{f"{since}__lt": cutoff}).exclude(pk__in=unsent):
            if services.placement_move(
                placement=p, to=P.FAILED, error_class="timeout", error=error.format(limit_s)
            ):
                counts["failed"] += 1
    # An unload whose message was lost, or whose worker failed to record it, is asked again:
    # unloading is safe to repeat. One whose message still waits in the outbox is not lost, and
    # asking again would only queue a copy behind it at every sweep of the outage.
    resend_before = moment - timedelta(seconds=settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S)
    unloads = Placement.objects.filter(state=P.UNLOADING, updated_at__lt=resend_before).exclude(
        pk__in=outbox.waiting_args(messages.PLACEMENT_UNLOAD)
    )
    for p in unloads.select_related("device__node"):
        send_on_commit(messages.PLACEMENT_UNLOAD, p)
        counts["unloads_resent"] += 1
    return counts


@receiver(dispatch.message_sent, dispatch_uid="moc-placement-load-sent")
def placement_load_sent(sender: Any, *, name: str, args: list[Any], **kwargs: Any) -> None:
    """The broker took a placement's load message: its request's timeout counts from now."""
    if name == messages.PLACEMENT_LOAD:
        Placement.objects.filter(pk=args[0], state=P.REQUESTED).update(updated_at=timezone.now())


def _worker_gone(device: Device, now: float) -> str:
    """Why no live worker consumes `device`'s queue, in words: its node's worker and since when it
    is silent where its last beat is known, else only that none consumes it."""
    try:
        silence = queue_silence(device.queue)
    except redis.RedisError:
        silence = None
    if silence is None:
        return f"no worker consumes {device.queue} any more (it stopped or died)"
    return worker_silence(device, silence, now=now)
