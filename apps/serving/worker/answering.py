"""Answering inference requests on a device worker with the models it holds, and handing the
answers back to the web process that waits for them: `infer` for the Celery path's requests,
`answer_direct` for the direct channel's (apps.serving.domain.wire), which it answers in frames."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

from apps.core.redis_clients import shared_redis
from apps.serving import metrics
from apps.serving.domain import wire
from apps.serving.domain.errors import (
    BadInput,
    Cancelled,
    ErrorClass,
    ServingError,
    classify,
)
from apps.serving.worker.device import this_device
from apps.serving.worker.loading import device_lost
from apps.serving.worker.records import RECORDER, Line
from apps.serving.worker.residents import RESIDENTS, NotResident

log = logging.getLogger(__name__)


Emit = Callable[[dict[str, Any]], None]
# The task a direct op is recorded under (InferenceRecord.task).
_TASKS = {wire.Op.COMPLETE: "generate", wire.Op.CHAT: "chat", wire.Op.EMBED: "embed"}


def infer(placement_id: int, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request with a resident model; failures come back as values with their class."""
    started = time.time()
    queue_ms = _queue_ms(started, request.get("sent_at"), request.get("waited_ms"))
    task = str(request.get("task"))
    deadline = time.monotonic() + float(request.get("timeout_s") or settings.MOC_SERVING_TIMEOUT_S)
    version_id = int(request.get("version_id") or 0)
    try:
        with RESIDENTS.use(placement_id) as loaded:
            if task not in loaded.tasks:
                raise BadInput(f"this model answers {', '.join(sorted(loaded.tasks))} requests, not {task}")
            began = time.perf_counter()
            result = _run(loaded, task, request.get("input") or {}, deadline)
            compute_ms = (time.perf_counter() - began) * 1000
    except Exception as exc:
        error_class, message, resident = _failed(exc, placement_id, version_id, task, started, queue_ms)
        if not resident:
            return {"ok": False, "error_class": error_class.value, "error": message, "resident": False}
        return {"ok": False, "error_class": error_class.value, "error": message}
    tokens_in, tokens_out = int(result.get("tokens_in") or 0), int(result.get("tokens_out") or 0)
    RECORDER.add(
        Line(started, version_id, placement_id, task, "ok", "", queue_ms, compute_ms, tokens_in, tokens_out)
    )
    return {"ok": True, "result": result, "queue_ms": queue_ms, "compute_ms": compute_ms}


def answer_direct(request: wire.Request, emit: Emit, *, cancelled: Callable[[], bool] | None = None) -> None:
    """Answer a direct request with a resident model in frames: a delta per stretch of final text
    for a streamed one, then done with the result and wire.FIGURES, or an error of its class.
    `cancelled` (asked before it runs and as each stretch of text becomes final) says its caller
    went away: it then stops where it is, sends nothing more, and is recorded as cancelled."""
    started = time.time()
    queue_ms = _queue_ms(started, request.sent_at, request.waited_ms)
    if request.op == wire.Op.NOOP:  # the transport's own round trip: no model, no record
        emit(wire.done({}, _figures(queue_ms, 0.0)))
        return
    task = _TASKS[request.op]
    # The time the request had left when sent, less what it waited for this worker.
    left = request.timeout_s - max(0.0, started - request.sent_at)
    deadline = time.monotonic() + max(0.0, left)
    delivered: list[float] = []  # when each delta's text became final

    def on_delta(index: int, text: str, tokens: list[wire.Token] | None, finish_reason: str | None) -> None:
        delivered.append(time.perf_counter())
        if request.stream:
            emit(wire.delta(index, text, tokens=tokens, finish_reason=finish_reason))
        if cancelled is not None and cancelled():
            raise Cancelled("its caller went away")  # out through the runtime: decoding ends here

    began = time.perf_counter()
    try:
        if cancelled is not None and cancelled():
            raise Cancelled("its caller went away before it ran")
        with RESIDENTS.use(request.placement_id) as loaded:
            began = time.perf_counter()
            result = _run_direct(loaded, request, deadline, on_delta)
            compute_ms = (time.perf_counter() - began) * 1000
    except Cancelled:
        compute_ms = (time.perf_counter() - began) * 1000
        RECORDER.add(
            Line(
                started, request.version_id, request.placement_id, task, "cancelled", "", queue_ms, compute_ms
            )
        )
        return
    except Exception as exc:
        error_class, message, resident = _failed(
            exc, request.placement_id, request.version_id, task, started, queue_ms
        )
        emit(wire.error(error_class.value, message, resident=resident))
        return
    usage = result.get("usage") or {}
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    ttft_ms = (delivered[0] - began) * 1000 if delivered else None
    itl_ms = (
        (delivered[-1] - delivered[0]) * 1000 / (tokens_out - 1)
        if len(delivered) > 1 and tokens_out > 1
        else None
    )
    RECORDER.add(
        Line(
            started,
            request.version_id,
            request.placement_id,
            task,
            "ok",
            "",
            queue_ms,
            compute_ms,
            tokens_in,
            tokens_out,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
        )
    )
    if request.stream and "choices" in result:  # the text and tokens went as deltas
        result["choices"] = [c | {"text": "", "tokens": None, "prompt": None} for c in result["choices"]]
    emit(wire.done(result, _figures(queue_ms, compute_ms, ttft_ms, itl_ms, tokens_in, tokens_out)))


def _run_direct(
    loaded: Any, request: wire.Request, deadline: float, on_delta: Callable[..., None]
) -> dict[str, Any]:
    params = request.params
    if request.op == wire.Op.EMBED:
        args = _params(params, wire.EMBED_PARAMS)
        made = loaded.embed(texts=args["inputs"], dimensions=args["dimensions"], deadline=deadline)
        return {"data": made["embeddings"], "usage": {"prompt_tokens": made["tokens_in"]}, "dim": made["dim"]}
    if request.op == wire.Op.CHAT:
        return loaded.chat(**_params(params, wire.CHAT_PARAMS), deadline=deadline, on_delta=on_delta)
    return loaded.complete(**_params(params, wire.COMPLETE_PARAMS), deadline=deadline, on_delta=on_delta)


def _params(params: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    missing = [name for name in names if name not in params]
    if missing:
        raise BadInput(f"{missing[0]} is missing from the request")
    return {name: params[name] for name in names}


def _queue_ms(started: float, sent_at: Any, waited_ms: Any) -> float:
    """Sent to taken (never below 0 when the clocks disagree), plus the web's wait for its slot."""
    return max(0.0, (started - float(sent_at or started)) * 1000) + float(waited_ms or 0.0)


def _figures(
    queue_ms: float,
    compute_ms: float,
    ttft_ms: float | None = None,
    itl_ms: float | None = None,
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> dict[str, Any]:
    return dict(
        zip(wire.FIGURES, (queue_ms, compute_ms, ttft_ms, itl_ms, tokens_in, tokens_out), strict=True)
    )


def _failed(
    exc: Exception, placement_id: int, version_id: int, task: str, started: float, queue_ms: float
) -> tuple[ErrorClass, str, bool]:
    """A failed request's class and message, and whether its model is still resident: counted,
    recorded, logged where unexpected, and a lost device reported."""
    error_class = classify(exc)
    metrics.SERVING_ERRORS.labels(stage="infer", error_class=error_class.value).inc()
    if not isinstance(exc, ServingError):
        log.exception("placement %s: request failed", placement_id)
    RECORDER.add(Line(started, version_id, placement_id, task, "error", error_class.value, queue_ms))
    if isinstance(exc, NotResident):
        return error_class, str(exc), False
    if error_class == ErrorClass.DEVICE_LOST and (device := this_device()) is not None:
        device_lost(device, reason=str(exc))
    return error_class, str(exc)[:2000], True


def _run(loaded: Any, task: str, data: dict[str, Any], deadline: float) -> dict[str, Any]:
    if task == "generate":
        return loaded.generate(
            prompt=data["prompt"],
            max_new_tokens=data["max_new_tokens"],
            temperature=data["temperature"],
            top_p=data["top_p"],
            stop=data.get("stop") or [],
            seed=data.get("seed"),
            deadline=deadline,
        )
    if task == "embed":
        return loaded.embed(texts=data["texts"], deadline=deadline)
    return loaded.tensors(inputs=data["inputs"], deadline=deadline)


def reply(key: str, answer: dict[str, Any], *, ttl_s: int) -> None:
    """Hand the answer to the web process waiting on `key` (a list it BLPOPs)."""
    try:
        with shared_redis().pipeline(transaction=False) as pipe:
            pipe.rpush(key, json.dumps(answer, separators=(",", ":"), allow_nan=False))
            pipe.expire(key, ttl_s)
            pipe.execute()
    except (redis.RedisError, ValueError) as exc:
        log.warning("could not hand an answer back on %s: %s", key, exc)
