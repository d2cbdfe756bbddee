"""The hand-off: send a request to its placement's worker over the broker, wait for the answer on
a Redis list (BLPOP in slices, checking between them that the worker still lives), and turn a
failed answer into the refusal that says why. All the request's traffic with the device worker
is here; the flow around it (__init__) only chooses the placement and records the outcome."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import kombu.exceptions
import redis

from apps.core import dispatch
from apps.core.workers import alive_runs, queue_heard, silence_in
from apps.models.models import ModelVersion
from apps.serving import messages, metrics, placing
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.inference.liveness import Runs, WorkerSilent
from apps.serving.inference.refusals import RELOADING_RETRY_S, Refused
from apps.serving.models import Placement

# BLPOP waits at most this long per call (well under shared_redis()'s socket timeout); between
# calls the wait checks that a worker still consumes the queue.
_WAIT_SLICE_S = 1.0
# How long a restarted worker is given to answer, from the queue, a request sent before its start.
_RESTART_GRACE_S = 2.0
# What sending a task raises when the broker cannot be reached: redis-py's own errors, and
# kombu's wrapping of them.
_SEND_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError)


class BrokerUnreachable(Exception):
    """The broker could not take a request (the client's error is its __cause__)."""


def ask(
    client: redis.Redis,
    placement: Placement,
    version: ModelVersion,
    task: str,
    data: dict[str, Any],
    *,
    timeout_s: float,
    waited_s: float,
    runs: Runs,
) -> dict[str, Any] | None:
    """Send the request to the placement's worker and wait for its answer; None past the timeout.
    `runs`: the worker runs alive on its queue when the request chose it (liveness.live); one
    that restarts meanwhile drops what the old process held. Raises WorkerSilent when no live
    worker consumes the queue any more: before sending, a worker that stopped or died; while
    waiting, only one that died (one that stopped, saying goodbye, finishes the requests it holds
    before it exits)."""
    if timeout_s <= 0:
        return None
    queue = placement.device.queue
    if waited_s >= _WAIT_SLICE_S:  # it waited for its slot: what was read then is as old; look again
        heard = queue_heard(queue, client)
        runs = alive_runs(heard)
        if not runs and (silence := silence_in(queue, heard, client)) is not None:
            raise WorkerSilent(silence)
    reply_key = f"moc:reply:{uuid.uuid4().hex}"
    request = {
        "task": task,
        "input": data,
        "version_id": version.pk,
        "timeout_s": timeout_s,
        "sent_at": time.time(),
        "waited_ms": waited_s * 1000,
    }
    try:
        dispatch.send(
            messages.PLACEMENT_INFER, args=[placement.pk, request, reply_key], queue=queue, expires=timeout_s
        )
    except _SEND_ERRORS as exc:
        raise BrokerUnreachable() from exc
    # In slices shorter than the client's socket timeout, so a connection that stalls without
    # closing fails the request instead of holding its thread; the worker's deadline ends the work.
    # Between slices, the queue's worker must still be alive: a worker that died ends the wait
    # within a slice of going silent, not at the request's time limit.
    deadline = time.monotonic() + timeout_s
    replaced_at: float | None = None
    while (left := deadline - time.monotonic()) > 0:
        popped = client.blpop([reply_key], timeout=max(0.01, min(left, _WAIT_SLICE_S)))
        if popped is not None:
            return json.loads(popped[1])
        heard = queue_heard(queue, client)
        now_runs = alive_runs(heard)
        if not now_runs:
            silence = silence_in(queue, heard, client)
            if silence is not None and not silence.last.stopped:
                raise WorkerSilent(silence)
        elif runs and not runs & now_runs:
            # Every run that could have taken it is gone, replaced by a new one (a restart quicker
            # than the silence): a request still queued is answered by the new run at once; one
            # the old process had taken went with it.
            replaced_at = replaced_at or time.monotonic()
            if time.monotonic() - replaced_at >= _RESTART_GRACE_S:
                raise restarted(placement.device, version)
    return None


def restarted(device: object, version: object) -> Refused:
    """The refusal of a request its worker had taken when it restarted (a new run, not the one
    that took it, is alive)."""
    return Refused(
        503,
        f"The worker of {device} restarted while this request waited for {version}, and the "
        "request went with the old process; try again.",
        ErrorClass.DEVICE_LOST,
        RELOADING_RETRY_S,
    )


def failed(
    placement: Placement, version: ModelVersion, error_class: ErrorClass, error: str, *, resident: bool
) -> Refused:
    """The refusal of a request its worker answered with a failure. Reads the database only for a
    model the worker no longer holds (`resident` False), which it marks lost and loads again."""
    if resident or error_class == ErrorClass.BAD_INPUT:
        return worker_failed(version, error_class, error)
    placement.refresh_from_db(fields=["state"])
    if placement.state == PlacementState.LOST:  # its worker restarted and said so first
        again = Placement.objects.filter(
            version=version, device=placement.device, state__in=PLACEMENT_ACTIVE
        ).exists()
        then = "it is being loaded there again; try again shortly" if again else "load it again"
        return Refused(
            503,
            f"{version} was lost from {placement.device} when its worker restarted: {then}.",
            error_class,
            RELOADING_RETRY_S if again else None,
        )
    if placement.state != PlacementState.LOADED:  # being unloaded: this request raced the unload
        return Refused(503, f"{version} is being unloaded from {placement.device}.", error_class, 1)
    # Still LOADED, yet its worker does not hold it (the worker restarted): lost; load it again.
    again = placing.placement_lost(placement, error=error, reload=placing.Reload.SAME_DEVICE)
    if again is not None:
        return Refused(
            503,
            f"{version} was lost by its worker and is being loaded again.",
            error_class,
            RELOADING_RETRY_S,
        )
    why = "load it again" if placement.depends_on_id is None else "load its base and it again"
    return Refused(503, f"{version} was lost by its worker; {why}.", error_class)


def worker_failed(version: object, error_class: ErrorClass, error: str) -> Refused:
    """failed() of a model its worker holds, or of the caller's bad input: no database needed."""
    if error_class == ErrorClass.BAD_INPUT:
        metrics.INFERENCE_REFUSED.labels(reason=ErrorClass.BAD_INPUT).inc()
        return Refused(400, error, error_class, field="input")
    status = {ErrorClass.TIMEOUT: 504, ErrorClass.OUT_OF_MEMORY: 503, ErrorClass.DEVICE_LOST: 503}.get(
        error_class, 502
    )
    return Refused(status, f"{version} failed to answer: {error_class.value}: {error}", error_class)
