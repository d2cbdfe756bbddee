"""An inference request on the asynchronous side (the data plane): the same rules as the sync
path (this package's __init__), over redis.asyncio and the direct channel (inference/direct.py),
holding no thread while it waits.

The caller (the data plane's routing) brings the targets, the version's limits and the bulkhead's
name, so nothing here reads the database on the common path. The flow: the targets' workers (a
silent worker's placements are lost and their version loaded elsewhere, as the sync path does it,
through sync_to_async; none alive, and the slot taken meanwhile is given back), a slot in the
bulkhead, the breakers (closed first, admitted; read again, with the workers, after a wait for the
slot), the request sent and its frames read, the outcome recorded on the breaker, the slot given
back (on cancel too). After the done frame a failure to record it is logged, not raised: the
answer is whole. Breakers and bulkheads are the very Redis state the sync path uses, so both paths
count against the same bounds.

Round trips of a request that finds a slot, a closed breaker and a live worker: the prelude (1:
the workers, the slot's first try and the breakers, pipelined), the request sent and its first
frames (1, pipelined), each later slice with frames (1 per wait: a non-streamed answer after its
acceptance is one more), the epilogue (1: the breaker's record and the slot's give-back,
pipelined, after the done frame was handed on): 4 for a non-streamed answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from asgiref.sync import sync_to_async

from apps.core import redis_batch
from apps.core.redis_batch import Command
from apps.core.redis_clients import shared_redis
from apps.core.workers import Heard, Silence, asilence_in, heard_by_queue, heard_command
from apps.models.models import ModelVersion
from apps.serving import metrics
from apps.serving.domain import wire
from apps.serving.domain.errors import ErrorClass, Refusal
from apps.serving.inference import Limits
from apps.serving.inference.direct import exchange
from apps.serving.inference.handoff import failed, worker_failed
from apps.serving.inference.liveness import WorkerSilent, workers_silent
from apps.serving.inference.refusals import (
    RELOADING_RETRY_S,
    Refused,
    breaker_open,
    bulkhead_full,
    redis_unreachable,
    slot_wait_used_up,
)
from apps.serving.models import Placement
from apps.serving.resilience import (
    AsyncBreakers,
    AsyncBulkhead,
    BulkheadFull,
    Held,
    Seen,
    breaker_order,
    read_commands,
    seen_from,
)

log = logging.getLogger(__name__)

# A request left with less time than this after waiting for a slot is not sent at all.
_MIN_LEFT_S = 0.05
# The refusals of the hop (direct.exchange) that count against the placement's breaker, and what
# the breaker says of each.
_FAILURES = {ErrorClass.TIMEOUT.value: "no answer", ErrorClass.DEVICE_LOST.value: "its worker restarted"}


@dataclass(frozen=True, slots=True)
class Target:
    """A loaded placement a request may go to: its id, its device's queue, the device's name."""

    placement_id: int
    queue: str
    device: str


async def stream(
    *,
    client: redis.asyncio.Redis,
    version_id: int,
    version_label: str,
    targets: Sequence[Target],
    op: wire.Op,
    params: dict[str, Any],
    stream: bool,
    limits: Limits,
    bulkhead: str,
    release_id: int | None = None,
    deployment_id: int | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Answer one request with one of `targets` (loaded placements of the version): yields its
    delta frames (with `stream`) and then its done frame, whose figures gain "slot_wait_ms".
    Raises Refused for every failure, before or after deltas. `client`'s socket timeout must
    outlast a wait slice (direct.WAIT_SLICE_S)."""
    began = time.perf_counter()
    outcome = "cancelled"  # unless it ends otherwise: the caller went away
    try:
        frames = _stream(
            client=client,
            version_id=version_id,
            version=version_label,
            targets=targets,
            op=op,
            params=params,
            stream=stream,
            limits=limits,
            bulkhead=bulkhead,
            release_id=release_id,
            deployment_id=deployment_id,
        )
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame
        outcome = "ok"
    except redis.RedisError as exc:
        outcome = Refusal.BROKER_UNAVAILABLE
        metrics.INFERENCE_REFUSED.labels(reason=outcome).inc()
        log.warning("inference for %s refused: MOC's Redis is unreachable: %s", version_label, exc)
        raise redis_unreachable(version_label) from exc
    except Refused as refused:
        outcome = refused.error_class or "refused"
        raise
    except Exception:
        outcome = "error"
        raise
    finally:
        metrics.INFERENCE_SECONDS.labels(task=op.value, outcome=outcome).observe(time.perf_counter() - began)


async def noop(*, client: redis.asyncio.Redis, target: Target, timeout_s: float) -> float:
    """The direct channel's own round trip to `target`'s worker (seconds): a no-op request sent
    and its done frame read, with nothing else of a request's path (for the bench)."""
    request = wire.Request(
        id=uuid.uuid4().hex,
        op=wire.Op.NOOP,
        placement_id=target.placement_id,
        version_id=0,
        params={},
        timeout_s=timeout_s,
        sent_at=time.time(),
    )
    began = time.perf_counter()
    name = f"placement {target.placement_id}"
    frames = exchange(
        client, request, queue=target.queue, version=name, device=target.device, timeout_s=timeout_s
    )
    async with contextlib.aclosing(frames):
        async for frame in frames:
            if frame["k"] == wire.Kind.ERROR.value:
                raise worker_failed(name, _error_class(frame), str(frame.get("error") or ""))
    return time.perf_counter() - began


async def _stream(
    *,
    client: redis.asyncio.Redis,
    version_id: int,
    version: str,
    targets: Sequence[Target],
    op: wire.Op,
    params: dict[str, Any],
    stream: bool,
    limits: Limits,
    bulkhead: str,
    release_id: int | None,
    deployment_id: int | None,
) -> AsyncGenerator[dict[str, Any], None]:
    # The bulkhead before the breakers: a half-open breaker's probe, once admitted, always gets
    # its outcome recorded, instead of being lost to a 429 between the two.
    slots = AsyncBulkhead(client, bulkhead, concurrency=limits.concurrency, queue=limits.queue)
    asked = slots.ask(wait_s=limits.timeout_s, lease_s=limits.timeout_s + 10)
    try:  # the prelude: one round trip
        candidates, seen, (first,) = await _looked(client, version_id, targets, asked.command)
    except BaseException:  # every worker silent (or Redis failing): whatever it took is given back
        await asyncio.shield(slots.withdraw(asked))
        raise
    breakers = AsyncBreakers(client)
    try:
        async with slots.holding(asked, first) as held:
            waited_s = held.waited_s
            try:
                if limits.timeout_s - waited_s < _MIN_LEFT_S:
                    metrics.INFERENCE_REFUSED.labels(reason=Refusal.BULKHEAD_FULL).inc()
                    raise slot_wait_used_up(version, waited_s, limits.timeout_s)
                if held.queued:  # what was read of the workers and breakers is as old: look again
                    candidates, seen, _ = await _looked(client, version_id, candidates)
                chosen, seen_now = await _admit(breakers, version, candidates, limits, seen)
                request = wire.Request(
                    id=uuid.uuid4().hex,
                    op=op,
                    placement_id=chosen.placement_id,
                    version_id=version_id,
                    params=params,
                    timeout_s=limits.timeout_s - waited_s,
                    sent_at=time.time(),
                    stream=stream,
                    release_id=release_id,
                    deployment_id=deployment_id,
                    waited_ms=waited_s * 1000,
                )
                frames = _answer(
                    client, breakers, held, chosen, seen_now, request, version_id, version, limits
                )
                async with contextlib.aclosing(frames):
                    async for frame in frames:
                        if frame["k"] == wire.Kind.DONE.value:
                            frame["figures"] = {
                                **(frame.get("figures") or {}),
                                "slot_wait_ms": waited_s * 1000,
                            }
                        yield frame
            except Refused as refused:
                refused.waited_s = waited_s
                raise
    except BulkheadFull as full:
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.BULKHEAD_FULL).inc()
        raise bulkhead_full(version, full.reason, full.retry_after_s) from None


async def _looked(
    client: redis.asyncio.Redis, version_id: int, targets: Sequence[Target], *riding: Command
) -> tuple[list[Target], dict[int, Seen], list[Any]]:
    """The targets' workers and breakers, with the `riding` commands (a slot's first try), in one
    round trip: the live targets (_live), the breakers as read, the riding commands' replies."""
    queues = sorted({t.queue for t in targets})
    ids = [t.placement_id for t in targets]
    replies = await redis_batch.arun(client, [heard_command(queues), *riding, *read_commands(ids)])
    candidates = await _live(client, version_id, targets, heard_by_queue(queues, replies[0]))
    return candidates, seen_from(ids, replies[1 + len(riding) :]), replies[1 : 1 + len(riding)]


async def _answer(
    client: redis.asyncio.Redis,
    breakers: AsyncBreakers,
    held: Held,
    chosen: Target,
    seen: Seen,
    request: wire.Request,
    version_id: int,
    version: str,
    limits: Limits,
) -> AsyncGenerator[dict[str, Any], None]:
    """The request sent to `chosen` and its frames; the outcome recorded on its breaker, with the
    slot given back in the same round trip (nothing recorded for a caller that went away or for
    Redis out of reach: neither is the placement's doing; the slot is then given back as the
    block holding it ends). After the done frame, a failure of that round trip is only logged:
    the answer is whole, and the slot's lease frees it."""

    async def record(error_class: ErrorClass | None, error: str = "") -> None:
        # Shielded: once the give-back rides with it, a cancelled caller must not stop it halfway.
        await asyncio.shield(
            breakers.record(
                chosen.placement_id,
                limits.breaker,
                now=time.time(),
                error_class=error_class,
                error=error,
                seen=seen,
                along=[held.give_back()],
            )
        )

    async def succeeded() -> None:
        try:
            await record(None)
        except redis.RedisError as exc:
            log.warning(
                "%s answered, but its success and slot were not recorded (the slot's lease frees it): %s",
                version,
                exc,
            )

    frames = exchange(
        client, request, queue=chosen.queue, version=version, device=chosen.device, timeout_s=limits.timeout_s
    )
    recorded = False
    try:
        async with contextlib.aclosing(frames):
            async for frame in frames:
                if frame["k"] == wire.Kind.DELTA.value:
                    yield frame
                    continue
                if frame["k"] == wire.Kind.DONE.value:
                    try:
                        yield frame
                    finally:  # the caller's aclose() at the done frame lands here too
                        await succeeded()
                    return
                error_class, error = _error_class(frame), str(frame.get("error") or "")
                await record(error_class, error)
                recorded = True
                raise await _worker_failed(chosen, version_id, version, error_class, error, frame)
    except WorkerSilent as silent:
        await record(ErrorClass.DEVICE_LOST, "its worker went silent")
        metrics.INFERENCE_REFUSED.labels(reason=Refusal.WORKER_SILENT).inc()
        raise await sync_to_async(_lose)(
            version_id, [(chosen.placement_id, silent.silence)], time.time()
        ) from None
    except Refused as refused:
        # Past its time, or its worker restarted under it: the placement's failure.
        if not recorded and (why := _FAILURES.get(refused.error_class)) is not None:
            await record(ErrorClass(refused.error_class), why)
        raise


async def _worker_failed(
    chosen: Target, version_id: int, version: str, error_class: ErrorClass, error: str, frame: dict[str, Any]
) -> Refused:
    """handoff.failed() of an error frame: the database is read only for a model its worker no
    longer holds (marked lost and loaded again)."""
    if bool(frame.get("resident", True)) or error_class == ErrorClass.BAD_INPUT:
        return worker_failed(version, error_class, error)
    return await sync_to_async(_failed_not_resident)(chosen.placement_id, version_id, error_class, error)


def _failed_not_resident(placement_id: int, version_id: int, error_class: ErrorClass, error: str) -> Refused:
    placement = Placement.objects.select_related("device__node").get(pk=placement_id)
    return failed(placement, ModelVersion.objects.get(pk=version_id), error_class, error, resident=False)


async def _live(
    client: redis.asyncio.Redis, version_id: int, targets: Sequence[Target], heard: dict[str, list[Heard]]
) -> list[Target]:
    """The targets whose device queue a live worker consumes, as `heard` (the queues' beats) says.
    The others are lost now (liveness.workers_silent, their version loaded elsewhere where it can
    be), and when none is left the request is refused."""
    silences = {queue: await asilence_in(queue, beats, client) for queue, beats in heard.items()}
    silent = [(t.placement_id, silence) for t in targets if (silence := silences[t.queue]) is not None]
    if not silent:
        return list(targets)
    refusal = await sync_to_async(_lose)(version_id, silent, time.time(), silences)
    if alive := [t for t in targets if silences[t.queue] is None]:
        return alive
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.WORKER_SILENT).inc()
    raise refusal


def _lose(
    version_id: int,
    silent: list[tuple[int, Silence]],
    now: float,
    known: dict[str, Silence | None] | None = None,
) -> Refused:
    """liveness.workers_silent() for placements named by id: lost, their version loaded
    elsewhere, and the refusal that says so."""
    version = ModelVersion.objects.get(pk=version_id)
    rows = Placement.objects.select_related("device__node").in_bulk([pid for pid, _ in silent])
    pairs = [(rows[pid], silence) for pid, silence in silent if pid in rows]
    if not pairs:  # gone from the database meanwhile: nothing left to mark
        return Refused(
            503, f"{version} cannot answer: its workers are silent.", Refusal.WORKER_SILENT, RELOADING_RETRY_S
        )
    return workers_silent(pairs, version, now, shared_redis(), known=known)


async def _admit(
    breakers: AsyncBreakers, version: str, candidates: list[Target], limits: Limits, seen: dict[int, Seen]
) -> tuple[Target, Seen]:
    """The candidate whose breaker admits the request, and its breaker as admission left it:
    from the breakers as read (`seen`), closed ones first (which cost no further round trip)."""
    now = time.time()
    refusal = None
    for target in breaker_order(candidates, seen, lambda t: t.placement_id):
        admission = await breakers.admit(
            target.placement_id, limits.breaker, now=now, seen=seen[target.placement_id]
        )
        if admission.ok:
            return target, admission.seen
        refusal = refusal or admission
    assert refusal is not None
    metrics.INFERENCE_REFUSED.labels(reason=Refusal.BREAKER_OPEN).inc()
    raise breaker_open(version, refusal.reason, refusal.retry_after_s)


def _error_class(frame: dict[str, Any]) -> ErrorClass:
    try:
        return ErrorClass(frame.get("error_class") or ErrorClass.INTERNAL)
    except ValueError:
        return ErrorClass.INTERNAL
