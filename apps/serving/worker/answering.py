"""Answering inference requests on a device worker with the models it holds, and handing the
answers back to the web process that waits for them."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from django.conf import settings

from apps.core.redis_clients import shared_redis
from apps.serving import metrics
from apps.serving.domain.errors import (
    BadInput,
    ErrorClass,
    ServingError,
    classify,
)
from apps.serving.worker.device import this_device
from apps.serving.worker.loading import device_lost
from apps.serving.worker.records import RECORDER, Line
from apps.serving.worker.residents import RESIDENTS, NotResident

log = logging.getLogger(__name__)


def infer(placement_id: int, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request with a resident model; failures come back as values with their class."""
    started = time.time()
    queue_ms = max(0.0, (started - float(request.get("sent_at") or started)) * 1000) + float(
        request.get("waited_ms") or 0.0
    )
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
        error_class = classify(exc)
        metrics.SERVING_ERRORS.labels(stage="infer", error_class=error_class.value).inc()
        if not isinstance(exc, ServingError):
            log.exception("placement %s: request failed", placement_id)
        RECORDER.add(Line(started, version_id, placement_id, task, "error", error_class.value, queue_ms))
        if isinstance(exc, NotResident):
            return {"ok": False, "error_class": error_class.value, "error": str(exc), "resident": False}
        if error_class == ErrorClass.DEVICE_LOST and (device := this_device()) is not None:
            device_lost(device, reason=str(exc))
        return {"ok": False, "error_class": error_class.value, "error": str(exc)[:2000]}
    tokens_in, tokens_out = int(result.get("tokens_in") or 0), int(result.get("tokens_out") or 0)
    RECORDER.add(
        Line(started, version_id, placement_id, task, "ok", "", queue_ms, compute_ms, tokens_in, tokens_out)
    )
    return {"ok": True, "result": result, "queue_ms": queue_ms, "compute_ms": compute_ms}


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
