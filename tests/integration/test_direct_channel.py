"""The direct channel end to end: a real device worker (simulated GPU) reads its queue's request
list and answers in frames that name its heartbeat's run; a request left on the list while the
worker restarts is taken by the new run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from apps.core import workers
from apps.core.redis_clients import redis_client
from apps.models import demo
from apps.models.models import ModelVersion
from apps.serving import placing
from apps.serving.domain import wire
from apps.serving.domain.states import PlacementState

# The serving tests' fixtures: a device worker on QUEUE, and the demo models registered.
from tests.integration.test_serving import QUEUE, registered, serving_worker, settled  # noqa: F401
from tests.procs import Process, wait_until
from tests.serving.doubles import COMPLETE

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def send(op: wire.Op, placement_id: int, params: dict[str, Any], **fields: Any) -> wire.Request:
    request = wire.Request(
        id=uuid.uuid4().hex,
        op=op,
        placement_id=placement_id,
        version_id=1,
        params=params,
        timeout_s=30.0,
        sent_at=time.time(),
        **fields,
    )
    redis_client().rpush(wire.request_key(QUEUE), request.encode())
    return request


def answer(request: wire.Request, wait_s: float = 60.0) -> list[dict[str, Any]]:
    client, got = redis_client(timeout=5.0), []
    deadline = time.monotonic() + wait_s
    while not got or got[-1]["k"] not in ("done", "error"):
        assert time.monotonic() < deadline, f"no answer in {wait_s} s: {got}"
        popped = client.blpop([wire.reply_key(request.id)], timeout=1)
        if popped is not None:
            got.append(wire.decode_frame(popped[1]))
    return got


def run_of(worker_name: str) -> tuple[str, float]:
    (info,) = [w for w in workers.live_workers() if w["hostname"].startswith(f"{worker_name}@")]
    return info["hostname"], info["started"]


def test_a_device_worker_streams_a_completion_in_frames_naming_its_run(
    serving_worker: Callable[[], Process],  # noqa: F811
    registered: dict[str, ModelVersion],  # noqa: F811
) -> None:
    serving_worker()
    placement = settled(placing.placement_load(version=registered[demo.BASE]), {PlacementState.LOADED})
    params = {**COMPLETE, "logprobs": 1}

    got = answer(send(wire.Op.COMPLETE, placement.pk, params, stream=True))

    accepted, *deltas, done = got
    assert (accepted["k"], accepted["host"], accepted["started"]) == ("accepted", *run_of("serve0"))
    assert len(deltas) > 1
    assert {f["k"] for f in deltas} == {"delta"}
    assert sum(len(f["tokens"]) for f in deltas) == 8
    assert done["k"] == "done"
    assert done["figures"]["tokens_out"] == 8
    assert done["figures"]["ttft_ms"] > 0


def test_a_request_left_on_the_list_while_the_worker_restarts_is_taken_by_the_new_run(
    serving_worker: Callable[[], Process],  # noqa: F811
) -> None:
    worker = serving_worker()
    first_run = run_of("serve0")
    worker.stop()

    request = send(wire.Op.NOOP, 0, {})
    time.sleep(1.5)
    assert redis_client().llen(wire.request_key(QUEUE)) == 1  # nobody took it meanwhile
    serving_worker()
    wait_until(lambda: run_of("serve0") != first_run, 30, "the new run's heartbeat")

    accepted, done = answer(request)

    assert (accepted["host"], accepted["started"]) == run_of("serve0")
    assert accepted["started"] > first_run[1]
    assert (done["k"], done["result"]) == ("done", {})
