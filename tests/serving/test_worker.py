"""The device worker's side of placements, in process: what a failed load leads to (by its error
class), waiting for room and for a base, draining before an unload, and the batched records.

Loads that fail are made to fail by replacing `runtimes.load` with one that raises: a real
out-of-memory or lost GPU cannot happen on a machine without a GPU. Real loads of the demo
models run in tests/integration/test_serving.py and tests/serving/runtimes/.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.db import DatabaseError
from django.utils import timezone

from apps.core.domain.units import format_bytes
from apps.fleet.devices.cpu import host_memory
from apps.fleet.domain.kinds import Backend
from apps.fleet.domain.states import DeviceHealth
from apps.models import demo
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import runtimes
from apps.serving.domain.errors import CorruptFile, DeviceLost, OutOfMemory, Transient
from apps.serving.domain.states import PlacementState
from apps.serving.models import InferenceRecord, Placement
from apps.serving.runtimes.guard import Guard, LoadCancelled, OverReservation
from apps.serving.worker import answering, loading
from apps.serving.worker import device as serving_device
from apps.serving.worker.records import Line, Recorder
from apps.serving.worker.residents import RESIDENTS, NotResident, Residents
from tests.fleet.factories import GIB, DeviceFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
P = PlacementState


class Model:
    """What a runtime hands back, as far as the worker looks at it."""

    runtime = "test"
    tasks = frozenset({"generate"})
    measured_bytes = 3 * GIB
    load_seconds = 2.0
    device = "cpu"

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> runtimes.Unloaded:
        self.closed = True
        return runtimes.Unloaded(freed_bytes=self.measured_bytes, verified=True, detail="")

    def generate(self, **request: Any) -> dict[str, Any]:
        time.sleep(float(request["prompt"]))
        return {"text": "ok", "tokens_in": 1, "tokens_out": 2, "finish_reason": "length"}


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, dispatched: list) -> Iterator[Any]:
    """A device this process serves, as a device worker would after starting (what it would
    send to other workers is only recorded)."""
    device = DeviceFactory(capacity_bytes=24 * GIB)
    monkeypatch.setattr(serving_device, "_device_id", device.pk)
    yield device
    for pk in RESIDENTS.ids():
        RESIDENTS.remove(pk, drain_s=0)


def requested(device: Any, **fields: Any) -> Placement:
    version = ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        estimated_vram_bytes=GIB,
        validation_state=ValidationState.VALID,
    )
    return PlacementFactory(version=version, device=device, state=P.REQUESTED, reserved_bytes=GIB, **fields)


def loads_as(monkeypatch: pytest.MonkeyPatch, outcome: Any, meanwhile: Any = None) -> None:
    """Loads end in `outcome` (a model, or an exception raised); `meanwhile` runs during the load
    (another writer moving the placement)."""

    def load(spec: runtimes.LoadSpec) -> Any:
        if meanwhile is not None:
            meanwhile()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(runtimes, "load", load)


def test_a_load_records_what_it_measured_and_keeps_the_model(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Model()
    loads_as(monkeypatch, model)
    placement = requested(gpu)

    assert loading.load(placement.pk, attempt=0).retry_in is None

    placement.refresh_from_db()
    assert placement.state == P.LOADED
    assert (placement.measured_bytes, placement.load_seconds) == (3 * GIB, 2.0)
    assert placement.priority > 0
    assert RESIDENTS.get(placement.pk) is model


def test_a_corrupt_file_fails_the_placement_with_its_class(gpu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loads_as(monkeypatch, CorruptFile("model.safetensors: header runs past the end of the file"))
    placement = requested(gpu)

    loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert placement.state == P.FAILED
    assert placement.error_class == "corrupt_file"
    assert "header runs past" in placement.error


def test_a_transient_error_is_retried_with_backoff_until_the_retries_run_out(
    gpu: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MOC_LOAD_RETRIES = 2
    loads_as(monkeypatch, Transient("the file is busy"))
    placement = requested(gpu)

    first = loading.load(placement.pk, attempt=0)
    second = loading.load(placement.pk, attempt=1)
    last = loading.load(placement.pk, attempt=2)

    assert first.retry_in is not None
    assert second.retry_in is not None
    assert last.retry_in is None
    placement.refresh_from_db()
    assert placement.state == P.FAILED


def test_out_of_memory_places_the_version_again_on_another_device_once(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = DeviceFactory(capacity_bytes=24 * GIB)
    loads_as(monkeypatch, OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB"))
    placement = requested(gpu)

    loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert placement.error_class == "out_of_memory"
    again = Placement.objects.get(version=placement.version, state=P.REQUESTED)
    assert again.device == other
    Placement.objects.filter(pk=again.pk).update(device=gpu)

    loading.load(again.pk, attempt=0)

    assert Placement.objects.filter(version=placement.version, state=P.REQUESTED).count() == 0


def test_a_lost_device_turns_unhealthy_and_what_it_held_is_placed_elsewhere(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = DeviceFactory(capacity_bytes=24 * GIB)
    held = requested(gpu)
    Placement.objects.filter(pk=held.pk).update(state=P.LOADED)
    loads_as(monkeypatch, DeviceLost("CUDA error: unspecified launch failure"))
    placement = requested(gpu)

    loading.load(placement.pk, attempt=0)

    gpu.refresh_from_db()
    assert gpu.health == DeviceHealth.UNHEALTHY
    assert "unspecified launch failure" in gpu.health_reason
    for lost in (held, placement):
        assert Placement.objects.get(pk=lost.pk).state == P.LOST
        assert Placement.objects.get(version=lost.version, state=P.REQUESTED).device == other


def test_a_load_waits_until_the_placements_evicted_for_it_are_gone(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads_as(monkeypatch, Model())
    placement = requested(gpu)
    victim = PlacementFactory(device=gpu, state=P.UNLOADING, displaced_by=placement)

    assert loading.load(placement.pk, attempt=0).retry_in is not None
    Placement.objects.filter(pk=victim.pk).update(state=P.UNLOADED)

    assert loading.load(placement.pk, attempt=0).retry_in is None


def test_an_adapter_waits_for_its_base_to_be_in_memory(gpu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loads_as(monkeypatch, Model())
    base = requested(gpu)
    adapter = requested(gpu, depends_on=base)

    assert loading.load(adapter.pk, attempt=0).note == "waiting for its base to load"
    loading.load(base.pk, attempt=0)

    assert loading.load(adapter.pk, attempt=0).note == "loaded"


def test_an_adapter_whose_base_failed_fails_too(gpu: Any) -> None:
    base = PlacementFactory(device=gpu, state=P.FAILED)
    adapter = requested(gpu, depends_on=base)

    loading.load(adapter.pk, attempt=0)

    assert Placement.objects.get(pk=adapter.pk).state == P.FAILED


def test_a_worker_that_has_not_finished_starting_asks_to_be_tried_again(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving_device, "_device_id", None)
    placement = requested(gpu)

    assert loading.load(placement.pk, attempt=0).retry_in is not None
    assert Placement.objects.get(pk=placement.pk).state == P.REQUESTED


def test_unload_frees_the_model_and_says_so(gpu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = Model()
    loads_as(monkeypatch, model)
    placement = requested(gpu)
    loading.load(placement.pk, attempt=0)
    Placement.objects.filter(pk=placement.pk).update(state=P.UNLOADING, end_reason="asked")

    loading.unload(placement.pk)

    placement.refresh_from_db()
    assert placement.state == P.UNLOADED
    assert model.closed
    assert "freed 3.0 GiB" in placement.end_reason
    assert RESIDENTS.get(placement.pk) is None


def test_unload_waits_for_the_requests_in_flight() -> None:
    residents = Residents()
    residents.add(1, Model())
    finished: list[float] = []

    def request() -> None:
        with residents.use(1) as model:
            model.generate(prompt="0.3")
        finished.append(time.monotonic())

    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(0.05)
    model, still_running = residents.remove(1, drain_s=5)
    removed_at = time.monotonic()
    thread.join()

    assert model is not None
    assert still_running == 0
    assert finished
    assert finished[0] <= removed_at


def test_a_model_being_unloaded_takes_no_new_requests() -> None:
    residents = Residents()
    residents.add(1, Model())
    with residents.use(1):
        closing = threading.Thread(target=residents.remove, args=(1,), kwargs={"drain_s": 1})
        closing.start()
        time.sleep(0.05)
        with pytest.raises(NotResident, match="being unloaded"), residents.use(1):
            pass
    closing.join()


def test_an_answer_for_a_placement_this_worker_does_not_hold_says_so(gpu: Any) -> None:
    answer = answering.infer(424242, {"task": "generate", "input": {"prompt": "0"}, "version_id": 1})

    assert answer["ok"] is False
    assert answer["resident"] is False
    assert answer["error_class"] == "device_lost"


def test_records_are_written_in_a_batch_with_each_placements_uses_and_priority(gpu: Any) -> None:
    placement = PlacementFactory(device=gpu, state=P.LOADED, load_seconds=4.0, reserved_bytes=GIB)
    recorder = Recorder()
    now = time.time()
    for offset in (0.0, 0.5, 1.0):
        recorder.add(Line(now + offset, placement.version_id, placement.pk, "generate", "ok", compute_ms=5.0))

    assert recorder.flush() == 3

    placement.refresh_from_db()
    assert InferenceRecord.objects.filter(placement=placement).count() == 3
    assert placement.use_count == 3
    assert abs(placement.last_used_at.timestamp() - (now + 1.0)) < 0.01
    assert placement.priority == pytest.approx(3 * 4.0)  # clock 0 + uses x load seconds / 1 GiB


def test_keep_alive_counts_from_the_last_use_the_records_wrote(gpu: Any) -> None:
    from apps.serving import placing

    placement = PlacementFactory(
        device=gpu, state=P.LOADED, keep_alive_s=60, loaded_at=timezone.now() - timedelta(hours=1)
    )
    recorder = Recorder()
    recorder.add(Line(time.time(), placement.version_id, placement.pk, "generate", "ok"))
    recorder.flush()

    assert placing.placements_expire_idle() == 0


def test_an_unload_asked_while_loading_stops_the_load_and_ends_the_placement_saying_so(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    placement = requested(gpu)
    answers: list[str] = []

    def slow_load(spec: runtimes.LoadSpec) -> Any:
        """A load that goes on until its guard stops it, as a runtime's tensor operations would."""
        Placement.objects.filter(pk=placement.pk).update(state=P.UNLOADING, end_reason="asked")
        answers.append(loading.unload(placement.pk))
        assert spec.guard is not None
        for _ in range(100):
            spec.guard.check()
            time.sleep(0.01)
        return Model()

    monkeypatch.setattr(runtimes, "load", slow_load)

    outcome = loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert answers == ["stopping its load, which frees what it took and ends the placement"]
    assert outcome.retry_in is None
    assert placement.state == P.UNLOADED
    assert placement.end_reason.startswith("asked (unloaded during load: stopped after 0.")
    assert RESIDENTS.get(placement.pk) is None
    assert not RESIDENTS.is_loading(placement.pk)


def test_an_unload_that_finds_the_load_done_frees_the_model_once_the_load_ends(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Model()
    placement = requested(gpu)

    def unload_meanwhile() -> None:
        Placement.objects.filter(pk=placement.pk).update(state=P.UNLOADING, end_reason="asked")

    loads_as(monkeypatch, model, unload_meanwhile)

    loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert placement.state == P.UNLOADED
    assert model.closed
    assert RESIDENTS.get(placement.pk) is None


def test_an_unload_asked_while_a_load_fails_transiently_ends_the_placement_instead_of_retrying(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    placement = requested(gpu)

    def unload_meanwhile() -> None:
        Placement.objects.filter(pk=placement.pk).update(state=P.UNLOADING, end_reason="asked")

    loads_as(monkeypatch, Transient("the file is busy"), unload_meanwhile)

    outcome = loading.load(placement.pk, attempt=0)

    assert outcome.retry_in is None
    assert Placement.objects.get(pk=placement.pk).state == P.UNLOADED


def test_a_placement_reaped_while_it_loaded_leaves_nothing_in_memory(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Model()
    placement = requested(gpu)

    def reap_meanwhile() -> None:
        Placement.objects.filter(pk=placement.pk).update(state=P.LOST)

    loads_as(monkeypatch, model, reap_meanwhile)

    loading.load(placement.pk, attempt=0)

    assert model.closed
    assert RESIDENTS.get(placement.pk) is None
    assert Placement.objects.get(pk=placement.pk).state == P.LOST


def test_models_whose_placement_ended_behind_the_workers_back_are_freed(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, orphan = Model(), Model()
    for model in (kept, orphan):
        loads_as(monkeypatch, model)
        loading.load(requested(gpu).pk, attempt=0)
    held = RESIDENTS.ids()
    Placement.objects.filter(pk=held[1]).update(state=P.FAILED)

    assert loading.free_orphans() == [held[1]]

    assert orphan.closed
    assert not kept.closed
    assert RESIDENTS.ids() == [held[0]]


def test_a_failed_load_records_its_class_beside_its_message_not_inside_it(
    gpu: Any, demo_models: Path
) -> None:
    # llama-cpp-python is not installed here: the demo GGUF file is refused for want of it.
    version = ModelVersionFactory(
        format=ModelFormat.GGUF,
        kind="causal-lm",
        path=str(demo_models / demo.GGUF),
        validation_state=ValidationState.VALID,
    )
    placement = PlacementFactory(version=version, device=gpu, state=P.REQUESTED, reserved_bytes=GIB)

    loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert placement.state == P.FAILED
    assert placement.error_class == "runtime_missing"
    assert placement.error == "GGUF needs llama-cpp-python, which is not installed on this worker"


def test_a_load_that_outgrows_its_reservation_fails_as_out_of_memory_and_is_not_placed_again(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    DeviceFactory(capacity_bytes=24 * GIB)
    loads_as(monkeypatch, OverReservation("took 3.1 GiB, over its 1.0 GiB reservation"))
    placement = requested(gpu)

    loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert (placement.state, placement.error_class) == (P.FAILED, "out_of_memory")
    assert placement.error == "took 3.1 GiB, over its 1.0 GiB reservation"
    assert not Placement.objects.filter(version=placement.version, state=P.REQUESTED).exists()


def test_a_load_gets_a_guard_with_its_reservation_and_the_margin_setting(
    gpu: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MOC_LOAD_GUARD_MARGIN = 1.0
    seen: list[runtimes.LoadSpec] = []

    def load(spec: runtimes.LoadSpec) -> Model:
        seen.append(spec)
        return Model()

    monkeypatch.setattr(runtimes, "load", load)

    loading.load(requested(gpu).pk, attempt=0)

    (spec,) = seen
    assert spec.guard is not None
    assert (spec.guard.reserved_bytes, spec.guard.limit_bytes) == (GIB, 2 * GIB)


def test_a_load_onto_host_memory_the_host_cannot_spare_is_refused_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, dispatched: list
) -> None:
    simulated = DeviceFactory(node__backend=Backend.SIM, simulated=True, capacity_bytes=2**50)
    monkeypatch.setattr(serving_device, "_device_id", simulated.pk)
    model = Model()
    loads_as(monkeypatch, model)
    placement = requested(simulated)
    beyond = psutil.virtual_memory().total * 2
    Placement.objects.filter(pk=placement.pk).update(reserved_bytes=beyond)

    loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert (placement.state, placement.error_class) == (P.FAILED, "out_of_memory")
    assert placement.error.startswith("the host has ")
    assert f"this load reserves {format_bytes(beyond)}" in placement.error
    assert not model.closed
    assert RESIDENTS.get(placement.pk) is None


def test_a_second_load_in_the_same_worker_waits_requested_while_one_runs(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "SLOT_WAIT_S", 0.01)
    first, second = requested(gpu), requested(gpu)
    meanwhile: list[loading.LoadOutcome] = []
    loads_as(monkeypatch, Model(), lambda: meanwhile.append(loading.load(second.pk, attempt=0)))

    loading.load(first.pk, attempt=0)

    assert meanwhile == [
        loading.LoadOutcome(retry_in=loading.WAIT_S, note="waiting for the load running in this worker")
    ]
    assert Placement.objects.get(pk=second.pk).state == P.REQUESTED
    assert Placement.objects.get(pk=first.pk).state == P.LOADED


def test_a_duplicate_load_of_a_placement_loading_here_is_refused_and_the_first_keeps_its_stop() -> None:
    residents = Residents()
    first, duplicate = (Guard(reserved_bytes=GIB, limit_bytes=2 * GIB) for _ in range(2))
    assert residents.start_loading(7, first, wait_s=0)

    assert not residents.start_loading(7, duplicate, wait_s=0)

    assert residents.stop_loading(7, "unloaded during load")
    with pytest.raises(LoadCancelled):
        first.check()
    duplicate.check()  # untouched
    residents.end_loading(7, first)
    assert not residents.is_loading(7)
    assert residents.start_loading(8, duplicate, wait_s=0)  # the slot is free again


def test_the_requests_in_flight_on_every_model_of_the_worker_are_counted() -> None:
    residents = Residents()
    residents.add(1, Model())
    residents.add(2, Model())

    with residents.use(1), residents.use(1), residents.use(2):
        assert residents.in_flight() == 3
    assert residents.in_flight() == 0


def test_an_overrun_that_counted_requests_beside_the_load_is_placed_again_elsewhere(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = DeviceFactory(capacity_bytes=24 * GIB)
    loads_as(monkeypatch, OverReservation("took 3.1 GiB, over its 1.0 GiB reservation", replaceable=True))
    placement = requested(gpu)

    loading.load(placement.pk, attempt=0)

    assert Placement.objects.get(pk=placement.pk).state == P.FAILED
    assert Placement.objects.get(version=placement.version, state=P.REQUESTED).device == other


def host_memory_device(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Any:
    """A simulated GPU this process serves: its models live in this machine's RAM."""
    device = DeviceFactory(node__backend=Backend.SIM, simulated=True, capacity_bytes=2**50, **fields)
    monkeypatch.setattr(serving_device, "_device_id", device.pk)
    return device


def test_a_load_onto_host_memory_leaves_room_for_what_the_nodes_other_loads_were_promised(
    monkeypatch: pytest.MonkeyPatch, dispatched: list
) -> None:
    mine = host_memory_device(monkeypatch)
    sibling = DeviceFactory(node=mine.node, index=mine.index + 1, simulated=True)
    model = Model()
    loads_as(monkeypatch, model)
    promised = host_memory().available_bytes
    PlacementFactory(device=sibling, state=P.LOADING, reserved_bytes=promised)
    placement = requested(mine)

    loading.load(placement.pk, attempt=0)

    placement.refresh_from_db()
    assert (placement.state, placement.error_class) == (P.FAILED, "out_of_memory")
    assert "of it promised to other loads not yet done on its devices" in placement.error
    assert RESIDENTS.get(placement.pk) is None


def test_a_later_load_still_waiting_on_the_same_host_defers_to_one_that_starts(
    monkeypatch: pytest.MonkeyPatch, dispatched: list
) -> None:
    mine = host_memory_device(monkeypatch)
    sibling = DeviceFactory(node=mine.node, index=mine.index + 1, simulated=True)
    model = Model()
    loads_as(monkeypatch, model)
    placement = requested(mine)
    PlacementFactory(device=sibling, state=P.REQUESTED, reserved_bytes=host_memory().available_bytes)

    loading.load(placement.pk, attempt=0)

    assert Placement.objects.get(pk=placement.pk).state == P.LOADED


def test_a_load_its_host_cannot_take_is_not_placed_on_another_device_of_that_host(
    monkeypatch: pytest.MonkeyPatch, dispatched: list
) -> None:
    mine = host_memory_device(monkeypatch)
    DeviceFactory(node=mine.node, index=mine.index + 1, simulated=True, capacity_bytes=4 * GIB)
    elsewhere = DeviceFactory(capacity_bytes=24 * GIB)
    loads_as(monkeypatch, Model())
    placement = requested(mine)
    Placement.objects.filter(pk=placement.pk).update(reserved_bytes=psutil.virtual_memory().total * 2)

    loading.load(placement.pk, attempt=0)

    assert Placement.objects.get(pk=placement.pk).error_class == "out_of_memory"
    assert Placement.objects.get(version=placement.version, state=P.REQUESTED).device == elsewhere


def test_a_load_whose_placement_cannot_be_looked_at_complains_once_not_every_look(
    gpu: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loading, "WATCH_S", 0.01)

    def database_down(placement_id: int) -> str | None:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(loading, "_state_of", database_down)
    loads_as(monkeypatch, Model(), lambda: time.sleep(0.3))

    with caplog.at_level(logging.WARNING, logger=loading.__name__):
        loading.load(requested(gpu).pk, attempt=0)

    complaints = [r for r in caplog.records if "could not look at it" in r.getMessage()]
    assert len(complaints) == 1


def test_a_load_does_not_wait_for_good_on_a_look_at_its_placement_that_hangs(
    gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "WATCH_S", 0.01)
    monkeypatch.setattr(loading, "WATCH_JOIN_S", 0.1)
    answer = threading.Event()
    monkeypatch.setattr(loading, "_state_of", lambda placement_id: answer.wait(10) and None)
    loads_as(monkeypatch, Model(), lambda: time.sleep(0.05))
    placement = requested(gpu)
    started = time.monotonic()
    try:
        loading.load(placement.pk, attempt=0)
        took = time.monotonic() - started
    finally:
        answer.set()

    assert took < 2.0
    assert Placement.objects.get(pk=placement.pk).state == P.LOADED
