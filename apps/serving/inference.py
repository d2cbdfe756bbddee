"""An inference request, on the web side: choose a loaded placement, pass its circuit breaker and
the version's bulkhead, hand the request to the device's worker, and wait for the answer.

The answer comes back on a Redis list the web process BLPOPs (one round trip, no result
backend polling), and nothing on this path writes to the database but the loss of a placement:
the worker records the request's figures in batches (apps.serving.worker.records). Refusals are
fast and say why: not loaded (409), breaker open (503), bulkhead full (429), its worker silent,
too many waiting, Redis or the broker unreachable (503), each with Retry-After where waiting helps.

A web thread waits on a device only while a live worker consumes its queue: a placement whose
worker went silent or stopped (apps.core.workers.queue_silence) is refused before it is sent,
and a wait already sent ends within a slice of its worker dying (not of it stopping: a worker
that said goodbye finishes what it holds). And a process keeps a thread for everything else: at
most MOC_SERVING_WAITING_PER_PROCESS of its threads wait on devices at once (in a bulkhead's
queue, or for an answer), and at most MOC_SERVING_WAITING_PER_QUEUE on one device's queue.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import kombu.exceptions
import redis
from django.conf import settings

from apps.core import dispatch
from apps.core.redis_clients import shared_redis
from apps.core.templatetags.moc import when
from apps.core.workers import Silence, queue_silence
from apps.fleet.domain.states import PLACEABLE_HEALTH, NodeState
from apps.fleet.models import Device
from apps.models.models import ModelVersion
from apps.serving import messages, metrics, placing
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.domain.errors import ErrorClass, Refusal
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.models import Placement, ServingProfile
from apps.serving.resilience import Admission, Breakers, Bulkhead, BulkheadFull, Seen

# A request left with less time than this after waiting for a slot is not sent at all.
_MIN_LEFT_S = 0.05
# BLPOP waits at most this long per call (well under shared_redis()'s socket timeout); between
# calls the wait checks that a worker still consumes the queue.
_WAIT_SLICE_S = 1.0
# How soon to try again: after the broker could not be reached, while a lost placement's version
# loads again, after a queue had its bound of requests waiting.
_BROKER_RETRY_S = 5
_RELOADING_RETRY_S = 5
_BUSY_RETRY_S = 1
# What sending a task raises when the broker cannot be reached: redis-py's own errors, and
# kombu's wrapping of them.
_SEND_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError)

log = logging.getLogger(__name__)


@dataclass
class Refused(Exception):
    """A request MOC answered without a model's answer: the HTTP status, and why."""

    status: int
    reason: str
    error_class: str = ""
    retry_after_s: int | None = None
    field: str = ""

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int
    queue: int
    timeout_s: float
    breaker: BreakerConfig


def limits_for(version: ModelVersion) -> Limits:
    """The version's limits: its serving profile's (read with the version where the caller used
    select_related("serving")), else the defaults."""
    try:
        profile = version.serving
    except ServingProfile.DoesNotExist:
        profile = None

    def pick(name: str, default: Any) -> Any:
        value = getattr(profile, name, None) if profile else None
        return default if value is None else value

    return Limits(
        concurrency=pick("max_concurrency", settings.MOC_SERVING_CONCURRENCY),
        queue=pick("max_queue", settings.MOC_SERVING_QUEUE),
        timeout_s=pick("request_timeout_s", settings.MOC_SERVING_TIMEOUT_S),
        breaker=BreakerConfig(
            failure_threshold=pick("breaker_failures", settings.MOC_BREAKER_FAILURES),
            open_s=pick("breaker_open_s", settings.MOC_BREAKER_OPEN_S),
        ),
    )


def infer(
    *, version: ModelVersion, task: str, data: dict[str, Any], placement_id: int | None = None
) -> dict[str, Any]:
    """Answer one request with a loaded placement of `version`, or raise Refused."""
    began = time.perf_counter()
    outcome = "error"
    try:
        answer = _infer(version=version, task=task, data=data, placement_id=placement_id)
        outcome = "ok"
        answer["total_ms"] = (time.perf_counter() - began) * 1000
        return answer
    except (redis.RedisError, _BrokerUnreachable) as exc:
        outcome = Refusal.BROKER_UNAVAILABLE
        metrics.INFERENCE_REFUSED.labels(reason=outcome).inc()
        # Where it is and what the client said go to the log, not to the caller.
        if isinstance(exc, _BrokerUnreachable):
            log.warning("inference for %s not sent: the broker is unreachable: %s", version, exc.__cause__)
            why = "the broker (CELERY_BROKER_URL) is unreachable, so requests cannot reach the workers"
        else:
            log.warning("inference for %s refused: MOC's Redis is unreachable: %s", version, exc)
            why = "MOC's Redis (REDIS_URL), which every request goes through, is unreachable"
        raise Refused(503, f"{version} cannot be asked now: {why}.", outcome, _BROKER_RETRY_S) from exc
    except Refused as refused:
        outcome = refused.error_class or "refused"
        raise
    finally:
        metrics.INFERENCE_SECONDS.labels(task=task, outcome=outcome).observe(time.perf_counter() - began)


def _infer(
    *, version: ModelVersion, task: str, data: dict[str, Any], placement_id: int | None
) -> dict[str, Any]:
    limits = limits_for(version)
    client = shared_redis()
    candidates = _loaded(version, placement_id)
    if not candidates:
        raise _not_loaded(version, placement_id, time.time())
    candidates = _live(client, version, candidates)
    # A place among this process's waiting threads before the bulkhead's queue, where a thread
    # waits as surely as on a device.
    if not _waiting.enter():
        raise _busy(
            version,
            f"{settings.MOC_SERVING_WAITING_PER_PROCESS} of this web server's requests are already "
            "waiting on devices, as many as it lets wait at once so that it keeps threads for "
            "everything else (MOC_SERVING_WAITING_PER_PROCESS)",
        )
    # The bulkhead first: a half-open breaker's probe, once admitted, always gets its outcome
    # recorded, instead of being lost to a 429 between the two.
    bulkhead = Bulkhead(client, f"version {version.pk}", concurrency=limits.concurrency, queue=limits.queue)
    try:
        with bulkhead.slot(wait_s=limits.timeout_s, lease_s=limits.timeout_s + 10) as waited_s:
            return _through_breaker(client, version, candidates, task, data, limits, waited_s)
    except BulkheadFull as full:
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.BULKHEAD_FULL).inc()
        raise Refused(
            429, f"{version} is busy: {full.reason}", Refusal.BULKHEAD_FULL, full.retry_after_s
        ) from None
    finally:
        _waiting.leave()


def _through_breaker(
    client: redis.Redis,
    version: ModelVersion,
    candidates: list[Placement],
    task: str,
    data: dict[str, Any],
    limits: Limits,
    waited_s: float,
) -> dict[str, Any]:
    if limits.timeout_s - waited_s < _MIN_LEFT_S:
        # The wait for a slot used the time up: say so, without charging a healthy placement.
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.BULKHEAD_FULL).inc()
        why = f"{version} waited {waited_s:.1f} s for a free slot, all of its {limits.timeout_s:g} s."
        raise Refused(504, why, ErrorClass.TIMEOUT)
    breakers = Breakers(client)
    chosen, seen_after = _admit(breakers, version, candidates, limits)
    answer = None
    failure: tuple[ErrorClass, str] | None = (ErrorClass.TIMEOUT, "no answer")
    try:
        answer = _ask(
            client, chosen, version, task, data, timeout_s=limits.timeout_s - waited_s, waited_s=waited_s
        )
    except _WorkerSilent as silent:
        failure = ErrorClass.DEVICE_LOST, "its worker went silent"
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.WORKER_SILENT).inc()
        raise _workers_silent([(chosen, silent.silence)], version, time.time(), client) from None
    except (redis.RedisError, _BrokerUnreachable):
        failure = None  # Redis's or the broker's failure, not the placement's
        raise
    finally:
        _waiting.leave_queue(chosen.device.queue)
        if answer is None and failure is not None:  # no answer in time, or its worker went silent
            breakers.record(
                chosen.pk,
                limits.breaker,
                now=time.time(),
                error_class=failure[0],
                error=failure[1],
                seen=seen_after,
            )
    if answer is None:
        raise Refused(504, f"{version} did not answer within {limits.timeout_s:g} s.", ErrorClass.TIMEOUT)
    if answer.get("ok"):
        breakers.record(chosen.pk, limits.breaker, now=time.time(), error_class=None, seen=seen_after)
        return {
            "placement": chosen.pk,
            "device": chosen.device_id,
            "result": answer["result"],
            "queue_ms": answer.get("queue_ms"),
            "compute_ms": answer.get("compute_ms"),
        }
    error_class = ErrorClass(answer.get("error_class") or ErrorClass.INTERNAL)
    error = str(answer.get("error") or "")
    breakers.record(
        chosen.pk, limits.breaker, now=time.time(), error_class=error_class, error=error, seen=seen_after
    )
    raise _failed(chosen, version, error_class, error, resident=answer.get("resident", True))


def _live(client: redis.Redis, version: ModelVersion, candidates: list[Placement]) -> list[Placement]:
    """The candidates whose device queue a live worker consumes. The others are lost now (their
    version loaded elsewhere where it can be), and when none is left the request is refused."""
    now = time.time()
    silences = {q: queue_silence(q, client=client) for q in {p.device.queue for p in candidates}}
    silent = [(p, silence) for p in candidates if (silence := silences[p.device.queue]) is not None]
    if not silent:
        return candidates
    refusal = _workers_silent(silent, version, now, client, known=silences)
    if live := [p for p in candidates if silences[p.device.queue] is None]:
        return live
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.WORKER_SILENT).inc()
    raise refusal


class _WorkerSilent(Exception):
    """The worker a request is for went silent: before the request was sent, or while it waited."""

    def __init__(self, silence: Silence) -> None:
        super().__init__(silence.queue)
        self.silence = silence


class _BrokerUnreachable(Exception):
    """The broker could not take a request (the client's error is its __cause__)."""


def _workers_silent(
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
    avoid = set()
    for device in siblings:
        if device.queue not in known:
            known[device.queue] = queue_silence(device.queue, client=client)
        if known[device.queue] is not None:
            avoid.add(device.pk)
    whys = []
    for placement, silence in silent:
        why = placing.worker_silence(placement.device, silence, now=now)
        placing.placement_lost(placement, error=f"Lost: {why}.", reload=placing.Reload.ELSEWHERE, avoid=avoid)
        whys.append(f"on {placement.device}: {why}")
    cannot = f"{version} cannot answer {'; nor '.join(whys)}."
    coming = list(_coming(version).select_related("device__node").order_by("-pk"))
    if again := next((p for p in coming if p.device_id not in avoid), None):
        where = "loaded" if again.state == PlacementState.LOADED else "being loaded"
        why = f"It is {where} on {again.device} instead; try again shortly."
        return Refused(503, f"{cannot} {why}", Refusal.WORKER_SILENT, _RELOADING_RETRY_S)
    if coming:  # asked of a silent device again, should its worker be alive after all
        why = (
            f"No other device can take it now; it is being loaded on {coming[0].device} again, "
            "which takes it only once its worker answers."
        )
        return Refused(503, f"{cannot} {why}", Refusal.WORKER_SILENT, _RELOADING_RETRY_S)
    why = (
        "No other device can take it now; load it again once its worker is back "
        "(POST /api/v1/placements/ with its id)."
    )
    return Refused(503, f"{cannot} {why}", Refusal.WORKER_SILENT)


def _admit(
    breakers: Breakers, version: ModelVersion, candidates: list[Placement], limits: Limits
) -> tuple[Placement, Seen]:
    """The candidate whose breaker admits the request, its breaker as admission left it, and a
    place among the requests waiting on its queue (the caller leaves it). A candidate whose queue
    has its bound waiting is passed over before its breaker is asked: a half-open breaker's probe,
    once admitted, must be sent."""
    now = time.time()
    seen = breakers.read(p.pk for p in candidates)  # each breaker read once for this request
    refusal: Admission | None = None
    busy: Placement | None = None
    for placement in _in_breaker_order(candidates, seen):
        queue = placement.device.queue
        if not _waiting.enter_queue(queue):
            busy = busy or placement
            continue
        try:
            admission = breakers.admit(placement.pk, limits.breaker, now=now, seen=seen[placement.pk])
        except BaseException:
            _waiting.leave_queue(queue)
            raise
        if admission.ok:
            return placement, admission.seen
        _waiting.leave_queue(queue)
        refusal = refusal or admission
    if refusal is not None:
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.BREAKER_OPEN).inc()
        retry_after = max(1, round(refusal.retry_after_s))
        raise Refused(503, f"{version} is not answering: {refusal.reason}", Refusal.BREAKER_OPEN, retry_after)
    assert busy is not None
    raise _busy(
        version,
        f"{settings.MOC_SERVING_WAITING_PER_QUEUE} of this web server's requests are already waiting "
        f"for {busy.device} ({busy.device.queue}) to answer, as many as it lets wait on one device "
        "(MOC_SERVING_WAITING_PER_QUEUE)",
    )


def _busy(version: ModelVersion, why: str) -> Refused:
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.QUEUE_BUSY).inc()
    return Refused(503, f"{version} is busy: {why}; try again shortly.", Refusal.QUEUE_BUSY, _BUSY_RETRY_S)


class _Waiting:
    """How many of this process's threads wait on devices: in all, bounded by
    MOC_SERVING_WAITING_PER_PROCESS, and on each device queue, by MOC_SERVING_WAITING_PER_QUEUE.
    Per process, because what it guards is this process's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all = 0
        self._count: dict[str, int] = {}

    def enter(self) -> bool:
        """Take a place among all the waiting; False when they are at their bound already."""
        with self._lock:
            if self._all >= settings.MOC_SERVING_WAITING_PER_PROCESS:
                return False
            self._all += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._all = max(0, self._all - 1)

    def enter_queue(self, queue: str) -> bool:
        """Take a place waiting on `queue`; False when it has its bound already."""
        with self._lock:
            count = self._count.get(queue, 0)
            if count >= settings.MOC_SERVING_WAITING_PER_QUEUE:
                return False
            self._count[queue] = count + 1
            return True

    def leave_queue(self, queue: str) -> None:
        with self._lock:
            count = self._count.get(queue, 0) - 1
            if count > 0:
                self._count[queue] = count
            else:
                self._count.pop(queue, None)


_waiting = _Waiting()


def _loaded(version: ModelVersion, placement_id: int | None) -> list[Placement]:
    rows = Placement.objects.select_related("device__node").filter(
        version=version, state=PlacementState.LOADED, device__health__in=PLACEABLE_HEALTH
    )
    if placement_id is not None:
        rows = rows.filter(pk=placement_id)
    return list(rows)


def _in_breaker_order(candidates: list[Placement], seen: dict[int, Seen]) -> list[Placement]:
    """Closed breakers first, spread at random among them; then the others, which may let a probe by."""
    if len(candidates) == 1:
        return candidates
    shuffled = random.sample(candidates, len(candidates))
    return sorted(shuffled, key=lambda p: seen[p.pk][0].state != "closed")


def _coming(version: ModelVersion) -> Any:
    """The version's placements that serve, or are on their way to (requested or loading)."""
    return Placement.objects.filter(version=version, state__in=PLACEMENT_ACTIVE).exclude(
        state=PlacementState.UNLOADING
    )


def _not_loaded(version: ModelVersion, placement_id: int | None, now: float) -> Refused:
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.NOT_LOADED).inc()
    placing.demand_note(version_id=version.pk, now=now)
    if placement_id is not None:
        return Refused(
            409,
            f"Placement {placement_id} of {version} is not loaded.",
            Refusal.NOT_LOADED,
            field="placement",
        )
    if coming := list(_coming(version).select_related("device__node")):
        if (stuck := _stuck(coming, now)) is not None:
            return Refused(503, f"{version} is not loaded: {stuck}", Refusal.NOT_LOADED)
        return Refused(409, f"{version} is loading; try again shortly.", Refusal.NOT_LOADED, retry_after_s=2)
    if (lost := _lost(version)) is not None:
        return Refused(503, f"{version} is not loaded: {lost}", Refusal.NOT_LOADED)
    return Refused(
        409,
        f"{version} is not loaded: load it first (POST /api/v1/placements/ with its id).",
        Refusal.NOT_LOADED,
    )


def _stuck(coming: list[Placement], now: float) -> str | None:
    """Why none of a version's coming placements loads soon: each was asked of a device whose
    worker is silent (lost with its worker, and nothing else could take it). None when one may."""
    client = shared_redis()
    silences = {q: queue_silence(q, client=client) for q in {p.device.queue for p in coming}}
    if any(silence is None for silence in silences.values()):
        return None
    first = coming[0]
    silence = silences[first.device.queue]
    assert silence is not None
    why = placing.worker_silence(first.device, silence, now=now)
    return (
        f"it is being loaded on {first.device} again, which takes it only once its worker answers "
        f"({why}); or load it on another device (POST /api/v1/placements/ with its id)."
    )


def _lost(version: ModelVersion) -> str | None:
    """Why a version the fleet lost is not loaded: where its last placement was, and what became
    of it. None when its last placement ended otherwise (unloaded, failed) or it had none."""
    last = (
        Placement.objects.filter(version=version)
        .select_related("device__node")
        .order_by("-updated_at", "-pk")
        .first()
    )
    if last is None or last.state != PlacementState.LOST:
        return None
    again = "load it on another node (POST /api/v1/placements/ with its id)."
    node = last.device.node
    if node.state == NodeState.OFFLINE:
        return f"its only placement was on {node.name}, offline since {when(node.last_heartbeat_at)}; {again}"
    error = last.error.removeprefix("Lost: ").rstrip(".") or "its worker lost it"
    return f"its placement on {last.device} was lost ({error}); {again.replace('another node', 'any device')}"


def _ask(
    client: redis.Redis,
    placement: Placement,
    version: ModelVersion,
    task: str,
    data: dict[str, Any],
    *,
    timeout_s: float,
    waited_s: float,
) -> dict[str, Any] | None:
    """Send the request to the placement's worker and wait for its answer; None past the timeout.
    Raises _WorkerSilent when no live worker consumes the queue any more: before sending, a
    worker that stopped or died; while waiting, only one that died (one that stopped, saying
    goodbye, finishes the requests it holds before it exits)."""
    if timeout_s <= 0:
        return None
    queue = placement.device.queue
    # A request that waited for its slot was checked as long ago: look again before sending.
    if waited_s >= _WAIT_SLICE_S and (silence := queue_silence(queue, client=client)) is not None:
        raise _WorkerSilent(silence)
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
        raise _BrokerUnreachable() from exc
    # In slices shorter than the client's socket timeout, so a connection that stalls without
    # closing fails the request instead of holding its thread; the worker's deadline ends the work.
    # Between slices, the queue's worker must still be alive: a worker that died ends the wait
    # within a slice of going silent, not at the request's time limit.
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        popped = client.blpop([reply_key], timeout=max(0.01, min(left, _WAIT_SLICE_S)))
        if popped is not None:
            return json.loads(popped[1])
        silence = queue_silence(queue, client=client)
        if silence is not None and not silence.last.stopped:
            raise _WorkerSilent(silence)
    return None


def _failed(
    placement: Placement, version: ModelVersion, error_class: ErrorClass, error: str, *, resident: bool
) -> Refused:
    if error_class == ErrorClass.BAD_INPUT:
        metrics.INFERENCE_REFUSED.labels(reason=ErrorClass.BAD_INPUT).inc()
        return Refused(400, error, error_class, field="input")
    if not resident:
        placement.refresh_from_db(fields=["state"])
        if placement.state != PlacementState.LOADED:  # being unloaded: this request raced the unload
            return Refused(503, f"{version} is being unloaded from {placement.device}.", error_class, 1)
        # Still LOADED, yet its worker does not hold it (the worker restarted): lost; load it again.
        again = placing.placement_lost(placement, error=error, reload=placing.Reload.SAME_DEVICE)
        if again is not None:
            return Refused(
                503,
                f"{version} was lost by its worker and is being loaded again.",
                error_class,
                _RELOADING_RETRY_S,
            )
        why = "load it again" if placement.depends_on_id is None else "load its base and it again"
        return Refused(503, f"{version} was lost by its worker; {why}.", error_class)
    status = {ErrorClass.TIMEOUT: 504, ErrorClass.OUT_OF_MEMORY: 503, ErrorClass.DEVICE_LOST: 503}.get(
        error_class, 502
    )
    return Refused(status, f"{version} failed to answer: {error_class.value}: {error}", error_class)
