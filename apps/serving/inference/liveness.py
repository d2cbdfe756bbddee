"""Whether a live worker consumes the device queue of each placement a request may go to, and what
follows when none does: the placements of silent workers are marked lost, their version loaded
on a device whose worker is not known to be silent, and the request refused saying so. Its own
module because both ends of the request check it: before sending (`live`) and while waiting for
the answer (handoff raises `WorkerSilent`)."""

from __future__ import annotations

import time

import redis

from apps.core.workers import Silence, alive_runs, queues_heard, queues_silence, silence_in
from apps.fleet.models import Device
from apps.models.models import ModelVersion
from apps.serving import metrics, placing
from apps.serving.domain.errors import Refusal
from apps.serving.domain.states import PlacementState
from apps.serving.inference.absent import coming
from apps.serving.inference.refusals import RELOADING_RETRY_S, Refused
from apps.serving.models import Placement


class WorkerSilent(Exception):
    """The worker a request is for went silent: before the request was sent, or while it waited."""

    def __init__(self, silence: Silence) -> None:
        super().__init__(silence.queue)
        self.silence = silence


Runs = frozenset[tuple[str, float]]


def live(
    client: redis.Redis, version: ModelVersion, candidates: list[Placement]
) -> tuple[list[Placement], dict[str, Runs]]:
    """The candidates whose device queue a live worker consumes, and the worker runs alive on each
    queue (handoff notices a run replaced under a request by them), read in one round trip. The
    others are lost now (their version loaded elsewhere where it can be), and when none is left
    the request is refused."""
    now = time.time()
    heard = queues_heard({p.device.queue for p in candidates}, client)
    runs = {queue: alive_runs(beats) for queue, beats in heard.items()}
    silences = {queue: silence_in(queue, beats, client) for queue, beats in heard.items()}
    silent = [(p, silence) for p in candidates if (silence := silences[p.device.queue]) is not None]
    if not silent:
        return candidates, runs
    refusal = workers_silent(silent, version, now, client, known=silences)
    if alive := [p for p in candidates if silences[p.device.queue] is None]:
        return alive, runs
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.WORKER_SILENT).inc()
    raise refusal


def workers_silent(
    silent: list[tuple[Placement, Silence]],
    version: ModelVersion,
    now: float,
    client: redis.Redis,
    *,
    known: dict[str, Silence | None] | None = None,
) -> Refused:
    """Mark every placement of `silent` lost, its worker being silent, and load their version on
    a device whose worker is not known to be silent: none of theirs, nor any of their nodes'
    whose worker is silent too (`known`: the silences already read, by queue). The refusal that
    says so, and where the version is coming instead."""
    known = {p.device.queue: silence for p, silence in silent} | (known or {})
    nodes = {p.device.node_id for p, _ in silent}
    siblings = Device.objects.select_related("node").filter(node_id__in=nodes)
    known |= queues_silence({d.queue for d in siblings if d.queue not in known}, client)
    avoid = {device.pk for device in siblings if known[device.queue] is not None}
    whys = []
    for placement, silence in silent:
        why = placing.worker_silence(placement.device, silence, now=now)
        placing.placement_lost(placement, error=f"Lost: {why}.", reload=placing.Reload.ELSEWHERE, avoid=avoid)
        whys.append(f"on {placement.device}: {why}")
    cannot = f"{version} cannot answer {'; nor '.join(whys)}."
    on_the_way = list(coming(version).select_related("device__node").order_by("-pk"))
    if again := next((p for p in on_the_way if p.device_id not in avoid), None):
        where = "loaded" if again.state == PlacementState.LOADED else "being loaded"
        why = f"It is {where} on {again.device} instead; try again shortly."
        return Refused(503, f"{cannot} {why}", Refusal.WORKER_SILENT, RELOADING_RETRY_S)
    if on_the_way:  # asked of a silent device again, should its worker be alive after all
        why = (
            f"No other device can take it now; it is being loaded on {on_the_way[0].device} again, "
            "which takes it only once its worker answers."
        )
        return Refused(503, f"{cannot} {why}", Refusal.WORKER_SILENT, RELOADING_RETRY_S)
    why = (
        "No other device can take it now; load it again once its worker is back "
        "(POST /api/v1/placements/ with its id)."
    )
    return Refused(503, f"{cannot} {why}", Refusal.WORKER_SILENT)
