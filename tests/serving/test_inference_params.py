"""inference.infer for a caller that routes requests itself (a deployment): only the placements it
names, its own limits, its own bulkhead. No device worker runs here: a worker's liveness is its
beat in Redis, and its answer is pushed onto the reply list by the stand-in for sending (`asked`,
tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from apps.core import dispatch
from apps.core.redis_clients import redis_client
from apps.serving import inference
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.models import Placement, ServingProfile
from apps.serving.resilience import Bulkhead
from tests.serving.test_inference_faults import ASK, heard, lm, loaded
from tests.serving.test_resilience import Holder

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("beats_current")]


def limits(**changes: Any) -> inference.Limits:
    base = {"concurrency": 4, "queue": 0, "timeout_s": 5.0, "breaker": BreakerConfig(5, 30.0)}
    return inference.Limits(**(base | changes))


def slot_taken(queue: int) -> tuple[Placement, Holder]:
    """A loaded placement whose worker is alive, and a request holding the one running slot of the
    bulkhead "deployment 9" (where `queue` more may wait) until its holder finishes."""
    placement = loaded()
    heard(placement.device.queue)
    holder = Holder(Bulkhead(redis_client(), "deployment 9", concurrency=1, queue=queue))
    holder.start()
    assert holder.got.wait(5)
    return placement, holder


def test_placement_ids_keep_the_request_to_the_placements_named(asked: list[int]) -> None:
    named = loaded()
    other = loaded(named.version)
    for placement in (named, other):
        heard(placement.device.queue)

    for _ in range(6):
        inference.infer(version=named.version, task="generate", data=ASK["input"], placement_ids=[named.pk])

    assert asked == [named.pk] * 6


def test_placement_ids_none_of_which_is_loaded_is_a_409_naming_them(asked: list[int]) -> None:
    serving = loaded()
    heard(serving.device.queue)
    elsewhere = loaded(lm())

    with pytest.raises(inference.Refused) as refused:
        inference.infer(
            version=serving.version, task="generate", data=ASK["input"], placement_ids=[elsewhere.pk]
        )

    assert refused.value.status == 409
    assert refused.value.error_class == "not_loaded"
    assert refused.value.reason == (
        f"None of the placements of {serving.version} asked for ({elsewhere.pk}) is loaded."
    )
    assert asked == []


def test_limits_given_override_the_versions_profile(
    asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    placement = loaded()
    heard(placement.device.queue)
    ServingProfile.objects.create(version=placement.version, request_timeout_s=30)
    monkeypatch.setattr(dispatch, "send", lambda name, **_: None)  # nobody answers

    began = time.monotonic()
    with pytest.raises(inference.Refused) as refused:
        inference.infer(
            version=placement.version, task="generate", data=ASK["input"], limits=limits(timeout_s=0.5)
        )

    assert time.monotonic() - began < 2
    assert refused.value.status == 504
    assert "did not answer within 0.5 s" in refused.value.reason


def test_a_named_bulkhead_is_the_one_that_fills_and_the_429_names_it(asked: list[int]) -> None:
    placement, holder = slot_taken(queue=0)
    try:
        with pytest.raises(inference.Refused) as refused:
            inference.infer(
                version=placement.version,
                task="generate",
                data=ASK["input"],
                limits=limits(concurrency=1),
                bulkhead="deployment 9",
            )
        # The version's own bulkhead is another: a request without the name gets through.
        answer = inference.infer(version=placement.version, task="generate", data=ASK["input"])
    finally:
        holder.finish()

    assert refused.value.status == 429
    assert refused.value.error_class == "bulkhead_full"
    assert "deployment 9 has 1 request running and 0 waiting" in refused.value.reason
    assert answer["placement"] == placement.pk


def test_an_answer_says_how_long_it_waited_for_its_bulkhead_slot(asked: list[int]) -> None:
    """A deployment leaves the wait out of the version's latency: either side's slowness lengthens it."""
    placement, holder = slot_taken(queue=1)
    threading.Timer(0.4, holder.finish).start()

    answer = inference.infer(
        version=placement.version,
        task="generate",
        data=ASK["input"],
        limits=limits(concurrency=1, queue=1),
        bulkhead="deployment 9",
    )

    assert 300 <= answer["slot_wait_ms"] < 3_000
    assert answer["total_ms"] >= answer["slot_wait_ms"]


def test_a_refusal_after_a_wait_for_the_slot_says_how_long_it_waited(
    asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    placement, holder = slot_taken(queue=1)
    threading.Timer(0.4, holder.finish).start()
    monkeypatch.setattr(dispatch, "send", lambda name, **_: None)  # nobody answers

    with pytest.raises(inference.Refused) as refused:
        inference.infer(
            version=placement.version,
            task="generate",
            data=ASK["input"],
            limits=limits(concurrency=1, queue=1, timeout_s=1.5),
            bulkhead="deployment 9",
        )

    assert (refused.value.status, refused.value.error_class) == (504, "timeout")
    assert 0.3 <= refused.value.waited_s < 1.5


def test_a_slot_that_came_with_no_time_left_is_the_bulkheads_refusal_not_a_timeout(
    asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a 504 "timeout", as a placement that did not answer: a caller judging the version by
    its refusals charged it with the wait in a bulkhead others filled."""
    placement = loaded()
    heard(placement.device.queue)
    real_slot = Bulkhead.slot

    @contextmanager
    def slot(self: Bulkhead, *, wait_s: float, lease_s: float) -> Iterator[float]:
        with real_slot(self, wait_s=wait_s, lease_s=lease_s):
            yield wait_s  # it got its slot just as its time ran out

    monkeypatch.setattr(Bulkhead, "slot", slot)

    with pytest.raises(inference.Refused) as refused:
        inference.infer(version=placement.version, task="generate", data=ASK["input"], limits=limits())

    assert (refused.value.status, refused.value.error_class) == (504, "bulkhead_full")
    assert "waited 5.0 s for a free slot, all of its 5 s" in refused.value.reason
    assert refused.value.waited_s == 5.0
    assert asked == []
