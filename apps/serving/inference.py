"""An inference request, on the web side: choose a loaded placement, pass its circuit breaker and
the version's bulkhead, hand the request to the device's worker, and wait for the answer.

The answer comes back on a Redis list the web process BLPOPs (one round trip, no result
backend polling), and nothing on this path writes to the database: the worker records the
request's figures in batches (apps.serving.worker.records). Refusals are fast and say why:
not loaded (409), breaker open (503), bulkhead full (429), each with Retry-After where waiting
helps.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from apps.core import dispatch
from apps.core.redis_clients import shared_redis
from apps.fleet.domain.states import PLACEABLE_HEALTH
from apps.models.models import ModelVersion
from apps.serving import messages, metrics, placing
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.models import Placement, ServingProfile
from apps.serving.resilience import Admission, Breakers, Bulkhead, BulkheadFull, Seen

# A request left with less time than this after waiting for a slot is not sent at all.
_MIN_LEFT_S = 0.05
# BLPOP waits at most this long per call: well under shared_redis()'s socket timeout.
_WAIT_SLICE_S = 5.0


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
    # The bulkhead first: a half-open breaker's probe, once admitted, always gets its outcome
    # recorded, instead of being lost to a 429 between the two.
    bulkhead = Bulkhead(client, f"version {version.pk}", concurrency=limits.concurrency, queue=limits.queue)
    try:
        with bulkhead.slot(wait_s=limits.timeout_s, lease_s=limits.timeout_s + 10) as waited_s:
            return _through_breaker(client, version, candidates, task, data, limits, waited_s)
    except BulkheadFull as full:
        metrics.INFERENCE_REFUSED.labels(reason="bulkhead_full").inc()
        raise Refused(429, f"{version} is busy: {full.reason}", "bulkhead_full", full.retry_after_s) from None


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
        metrics.INFERENCE_REFUSED.labels(reason="bulkhead_full").inc()
        why = f"{version} waited {waited_s:.1f} s for a free slot, all of its {limits.timeout_s:g} s."
        raise Refused(504, why, ErrorClass.TIMEOUT)
    breakers = Breakers(client)
    now = time.time()
    seen = breakers.read(p.pk for p in candidates)  # each breaker read once for this request
    admitted: tuple[Placement, Admission] | None = None
    refusal = None
    for placement in _in_breaker_order(candidates, seen):
        admission = breakers.admit(placement.pk, limits.breaker, now=now, seen=seen[placement.pk])
        if admission.ok:
            admitted = placement, admission
            break
        refusal = refusal or admission
    if admitted is None:
        assert refusal is not None
        metrics.INFERENCE_REFUSED.labels(reason="breaker_open").inc()
        retry_after = max(1, round(refusal.retry_after_s))
        raise Refused(503, f"{version} is not answering: {refusal.reason}", "breaker_open", retry_after)
    chosen, seen_after = admitted[0], admitted[1].seen
    answer = None
    try:
        answer = _ask(
            client, chosen, version, task, data, timeout_s=limits.timeout_s - waited_s, waited_s=waited_s
        )
    finally:
        if answer is None:  # no answer in time, or sending it failed: the placement's failure either way
            breakers.record(
                chosen.pk,
                limits.breaker,
                now=time.time(),
                error_class=ErrorClass.TIMEOUT,
                error="no answer",
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


def _not_loaded(version: ModelVersion, placement_id: int | None, now: float) -> Refused:
    metrics.INFERENCE_REFUSED.labels(reason="not_loaded").inc()
    placing.demand_note(version_id=version.pk, now=now)
    coming = Placement.objects.filter(version=version, state__in=PLACEMENT_ACTIVE).exclude(
        state=PlacementState.UNLOADING
    )
    if placement_id is not None:
        return Refused(
            409, f"Placement {placement_id} of {version} is not loaded.", "not_loaded", field="placement"
        )
    if coming.exists():
        return Refused(409, f"{version} is loading; try again shortly.", "not_loaded", retry_after_s=2)
    return Refused(
        409, f"{version} is not loaded: load it first (POST /api/v1/placements/ with its id).", "not_loaded"
    )


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
    """Send the request to the placement's worker and wait for its answer; None past the timeout."""
    if timeout_s <= 0:
        return None
    reply_key = f"moc:reply:{uuid.uuid4().hex}"
    request = {
        "task": task,
        "input": data,
        "version_id": version.pk,
        "timeout_s": timeout_s,
        "sent_at": time.time(),
        "waited_ms": waited_s * 1000,
    }
    dispatch.send(
        messages.PLACEMENT_INFER,
        args=[placement.pk, request, reply_key],
        queue=placement.device.queue,
        expires=timeout_s,
    )
    # In slices shorter than the client's socket timeout, so a connection that stalls without
    # closing fails the request instead of holding its thread; the worker's deadline ends the work.
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        popped = client.blpop([reply_key], timeout=max(0.01, min(left, _WAIT_SLICE_S)))
        if popped is not None:
            return json.loads(popped[1])
    return None


def _failed(
    placement: Placement, version: ModelVersion, error_class: ErrorClass, error: str, *, resident: bool
) -> Refused:
    if error_class == ErrorClass.BAD_INPUT:
        metrics.INFERENCE_REFUSED.labels(reason="bad_input").inc()
        return Refused(400, error, error_class, field="input")
    if not resident:
        placement.refresh_from_db(fields=["state"])
        if placement.state != PlacementState.LOADED:  # being unloaded: this request raced the unload
            return Refused(503, f"{version} is being unloaded from {placement.device}.", error_class, 1)
        # Still LOADED, yet its worker does not hold it (the worker restarted): lost; load it again.
        again = placing.placement_lost(placement, error=error, reload=placing.Reload.SAME_DEVICE)
        if again is not None:
            return Refused(
                503, f"{version} was lost by its worker and is being loaded again.", error_class, 5
            )
        why = "load it again" if placement.depends_on_id is None else "load its base and it again"
        return Refused(503, f"{version} was lost by its worker; {why}.", error_class)
    status = {ErrorClass.TIMEOUT: 504, ErrorClass.OUT_OF_MEMORY: 503, ErrorClass.DEVICE_LOST: 503}.get(
        error_class, 502
    )
    return Refused(status, f"{version} failed to answer: {error_class.value}: {error}", error_class)
