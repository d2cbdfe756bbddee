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

This module holds the public API (`infer`, `Refused`, `Limits`, `limits_for`) and the request's
flow; its steps live beside it, each importing only those listed before it: refusals.py
(`Refused`, how soon to try again), bounds.py (this process's threads waiting on devices),
absent.py (why a version has nothing loaded), liveness.py (the placements' workers, and what
their silence does), handoff.py (sending the request and waiting for its answer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from apps.core.redis_clients import shared_redis
from apps.fleet.domain.states import PLACEABLE_HEALTH
from apps.models.models import ModelVersion
from apps.serving import metrics
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.domain.errors import ErrorClass, Refusal
from apps.serving.domain.states import PlacementState
from apps.serving.inference.absent import not_loaded
from apps.serving.inference.bounds import waiting
from apps.serving.inference.handoff import BrokerUnreachable, ask, failed
from apps.serving.inference.liveness import Runs, WorkerSilent, live, workers_silent
from apps.serving.inference.refusals import (
    BROKER_RETRY_S,
    BUSY_RETRY_S,
    Refused,
    breaker_open,
    bulkhead_full,
    redis_unreachable,
    slot_wait_used_up,
    timed_out,
)
from apps.serving.models import Placement, ServingProfile
from apps.serving.resilience import Admission, Breakers, Bulkhead, BulkheadFull, Seen, breaker_order

__all__ = ["Limits", "Refused", "infer", "limits_for"]

# A request left with less time than this after waiting for a slot is not sent at all.
_MIN_LEFT_S = 0.05

log = logging.getLogger(__name__)


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
    *,
    version: ModelVersion,
    task: str,
    data: dict[str, Any],
    placement_id: int | None = None,
    placement_ids: Collection[int] | None = None,
    limits: Limits | None = None,
    bulkhead: str | None = None,
) -> dict[str, Any]:
    """Answer one request with a loaded placement of `version`, or raise Refused.

    A caller that routes requests itself (a deployment) narrows the candidates to
    `placement_ids`, and brings its own `limits` and `bulkhead` (the name its slots are kept
    under in Redis, shared by every process); by default the version's limits_for and its
    bulkhead, "version <id>"."""
    began = time.perf_counter()
    outcome = "error"
    try:
        answer = _infer(
            version=version,
            task=task,
            data=data,
            placement_id=placement_id,
            placement_ids=placement_ids,
            limits=limits or limits_for(version),
            bulkhead=bulkhead or f"version {version.pk}",
        )
        outcome = "ok"
        answer["total_ms"] = (time.perf_counter() - began) * 1000
        return answer
    except (redis.RedisError, BrokerUnreachable) as exc:
        outcome = Refusal.BROKER_UNAVAILABLE
        metrics.INFERENCE_REFUSED.labels(reason=outcome).inc()
        # Where it is and what the client said go to the log, not to the caller.
        if isinstance(exc, BrokerUnreachable):
            log.warning("inference for %s not sent: the broker is unreachable: %s", version, exc.__cause__)
            why = "the broker (CELERY_BROKER_URL) is unreachable, so requests cannot reach the workers"
            raise Refused(503, f"{version} cannot be asked now: {why}.", outcome, BROKER_RETRY_S) from exc
        log.warning("inference for %s refused: MOC's Redis is unreachable: %s", version, exc)
        raise redis_unreachable(version) from exc
    except Refused as refused:
        outcome = refused.error_class or "refused"
        raise
    finally:
        metrics.INFERENCE_SECONDS.labels(task=task, outcome=outcome).observe(time.perf_counter() - began)


def _infer(
    *,
    version: ModelVersion,
    task: str,
    data: dict[str, Any],
    placement_id: int | None,
    placement_ids: Collection[int] | None,
    limits: Limits,
    bulkhead: str,
) -> dict[str, Any]:
    client = shared_redis()
    candidates = _loaded(version, placement_id, placement_ids)
    if not candidates:
        raise not_loaded(version, placement_id, time.time(), placement_ids=placement_ids)
    candidates, runs = live(client, version, candidates)
    # A place among this process's waiting threads before the bulkhead's queue, where a thread
    # waits as surely as on a device.
    if not waiting.enter():
        busy = _busy(
            version,
            f"{settings.MOC_SERVING_WAITING_PER_PROCESS} of this web server's requests are already "
            "waiting on devices, as many as it lets wait at once so that it keeps threads for "
            "everything else (MOC_SERVING_WAITING_PER_PROCESS)",
        )
        busy.process_bound = True
        raise busy
    # The bulkhead first: a half-open breaker's probe, once admitted, always gets its outcome
    # recorded, instead of being lost to a 429 between the two.
    slots = Bulkhead(client, bulkhead, concurrency=limits.concurrency, queue=limits.queue)
    try:
        with slots.slot(wait_s=limits.timeout_s, lease_s=limits.timeout_s + 10) as waited_s:
            try:
                return _through_breaker(client, version, candidates, runs, task, data, limits, waited_s)
            except Refused as refused:
                refused.waited_s = waited_s
                raise
    except BulkheadFull as full:
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.BULKHEAD_FULL).inc()
        raise bulkhead_full(version, full.reason, full.retry_after_s) from None
    finally:
        waiting.leave()


def _through_breaker(
    client: redis.Redis,
    version: ModelVersion,
    candidates: list[Placement],
    runs: dict[str, Runs],
    task: str,
    data: dict[str, Any],
    limits: Limits,
    waited_s: float,
) -> dict[str, Any]:
    if limits.timeout_s - waited_s < _MIN_LEFT_S:
        # The wait for a slot used the time up: the bulkhead's refusal (not a placement's timeout),
        # charged to no placement.
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.BULKHEAD_FULL).inc()
        raise slot_wait_used_up(version, waited_s, limits.timeout_s)
    breakers = Breakers(client)
    chosen, seen_after = _admit(breakers, version, candidates, limits)
    answer = None
    failure: tuple[ErrorClass, str] | None = (ErrorClass.TIMEOUT, "no answer")
    try:
        answer = ask(
            client,
            chosen,
            version,
            task,
            data,
            timeout_s=limits.timeout_s - waited_s,
            waited_s=waited_s,
            runs=runs[chosen.device.queue],
        )
    except WorkerSilent as silent:
        failure = ErrorClass.DEVICE_LOST, "its worker went silent"
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.WORKER_SILENT).inc()
        raise workers_silent([(chosen, silent.silence)], version, time.time(), client) from None
    except (redis.RedisError, BrokerUnreachable):
        failure = None  # Redis's or the broker's failure, not the placement's
        raise
    finally:
        waiting.leave_queue(chosen.device.queue)
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
        raise timed_out(version, limits.timeout_s)
    if answer.get("ok"):
        breakers.record(chosen.pk, limits.breaker, now=time.time(), error_class=None, seen=seen_after)
        return {
            "placement": chosen.pk,
            "device": chosen.device_id,
            "result": answer["result"],
            "queue_ms": answer.get("queue_ms"),
            "compute_ms": answer.get("compute_ms"),
            # How long it waited for a slot in its bulkhead (not the API's: a deployment's figures
            # leave it out of the version's latency).
            "slot_wait_ms": waited_s * 1000,
        }
    error_class = ErrorClass(answer.get("error_class") or ErrorClass.INTERNAL)
    error = str(answer.get("error") or "")
    breakers.record(
        chosen.pk, limits.breaker, now=time.time(), error_class=error_class, error=error, seen=seen_after
    )
    raise failed(chosen, version, error_class, error, resident=answer.get("resident", True))


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
    for placement in breaker_order(candidates, seen, lambda p: p.pk):
        queue = placement.device.queue
        if not waiting.enter_queue(queue):
            busy = busy or placement
            continue
        try:
            admission = breakers.admit(placement.pk, limits.breaker, now=now, seen=seen[placement.pk])
        except BaseException:
            waiting.leave_queue(queue)
            raise
        if admission.ok:
            return placement, admission.seen
        waiting.leave_queue(queue)
        refusal = refusal or admission
    if refusal is not None:
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.BREAKER_OPEN).inc()
        raise breaker_open(version, refusal.reason, refusal.retry_after_s)
    assert busy is not None
    raise _busy(
        version,
        f"{settings.MOC_SERVING_WAITING_PER_QUEUE} of this web server's requests are already waiting "
        f"for {busy.device} ({busy.device.queue}) to answer, as many as it lets wait on one device "
        "(MOC_SERVING_WAITING_PER_QUEUE)",
    )


def _busy(version: ModelVersion, why: str) -> Refused:
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.QUEUE_BUSY).inc()
    return Refused(503, f"{version} is busy: {why}; try again shortly.", Refusal.QUEUE_BUSY, BUSY_RETRY_S)


def _loaded(
    version: ModelVersion, placement_id: int | None, placement_ids: Collection[int] | None
) -> list[Placement]:
    rows = Placement.objects.select_related("device__node").filter(
        version=version, state=PlacementState.LOADED, device__health__in=PLACEABLE_HEALTH
    )
    if placement_id is not None:
        rows = rows.filter(pk=placement_id)
    if placement_ids is not None:
        rows = rows.filter(pk__in=placement_ids)
    return list(rows)
