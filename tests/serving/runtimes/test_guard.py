"""The load guard, for real: torch work in this process is stopped past its limit or on request,
a library's `except Exception` cannot hide that, what it took is freed, and loads it cannot
interrupt are judged when they return."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from apps.serving.domain.errors import ErrorClass, classify
from apps.serving.runtimes import LoadSpec, load
from apps.serving.runtimes.guard import Guard, LoadCancelled, OverReservation, free_failed_load
from apps.serving.runtimes.memory import RSS
from tests.serving.runaway import inflated_lm

torch = pytest.importorskip("torch")

MiB = 1024**2
CHUNK = 32 * MiB


def rss() -> int:
    return psutil.Process().memory_info().rss


def guard_of(reserved: int = MiB) -> Guard:
    return Guard(reserved_bytes=reserved, limit_bytes=reserved + 256 * MiB)


def guarded(guard: Guard, work: Callable[[], None]) -> None:
    """`work` as a runtime runs a load: inside the guard's window."""
    with guard.watching("cpu", RSS):
        work()


def grow(chunks: list, count: int, *, swallow: bool = False) -> None:
    """A load's work: tensors written one after another, as a runtime builds a model."""
    for _ in range(count):
        try:
            chunks.append(torch.ones(CHUNK // 4, dtype=torch.float32))
        except Exception:
            if not swallow:
                raise


def test_a_torch_load_past_its_limit_is_stopped_as_out_of_memory_before_it_takes_everything() -> None:
    guard, chunks = guard_of(), []

    with pytest.raises(OverReservation) as caught:
        guarded(guard, lambda: grow(chunks, 64))  # 2 GiB if nothing stopped it

    assert classify(caught.value) == ErrorClass.OUT_OF_MEMORY
    assert str(caught.value).startswith("took ")
    assert "over its 1.0 MiB reservation (a load may take up to 257.0 MiB)" in str(caught.value)
    assert guard.peak_bytes > guard.limit_bytes
    assert len(chunks) < 32


def test_a_library_that_catches_every_exception_cannot_swallow_the_stop() -> None:
    guard, chunks = guard_of(), []

    with pytest.raises(OverReservation):
        guarded(guard, lambda: grow(chunks, 64, swallow=True))

    assert len(chunks) < 32


def test_what_a_stopped_load_took_is_freed_while_its_failure_is_still_being_handled() -> None:
    before = rss()

    try:
        guarded(guard_of(), lambda: grow([], 64))
    except OverReservation as exc:
        free_failed_load(exc, "cpu")
        held = rss() - before  # the worker records the failure only now

    assert held < 128 * MiB


def test_stop_ends_a_load_at_its_next_tensor_operation_whatever_thread_asks() -> None:
    guard = guard_of(reserved=64 * 1024 * MiB)
    threading.Timer(0.3, guard.stop, args=("unloaded during load",)).start()
    started = time.monotonic()

    def spin() -> None:
        while time.monotonic() - started < 30:
            torch.ones(16).sum()

    with pytest.raises(LoadCancelled, match="unloaded during load"):
        guarded(guard, spin)

    assert time.monotonic() - started < 2


def test_a_stop_inside_no_grad_leaves_the_threads_grad_mode_as_it_was() -> None:
    guard = guard_of(reserved=64 * 1024 * MiB)
    guard.stop("unloaded during load")

    with pytest.raises(LoadCancelled), guard.watching("cpu", RSS), torch.no_grad():
        torch.ones(4).sum()

    assert torch.is_grad_enabled()


def test_other_threads_torch_work_goes_on_while_a_load_is_stopped() -> None:
    guard = guard_of(reserved=64 * 1024 * MiB)
    results: list[float] = []

    def load_beside_a_request() -> None:
        guard.stop("unloaded during load")
        request = threading.Thread(target=lambda: results.append(float(torch.ones(3).sum())))
        request.start()
        request.join()
        torch.ones(1).sum()
        results.append(-1.0)  # never: the load stops at the operation above

    with pytest.raises(LoadCancelled):
        guarded(guard, load_beside_a_request)

    assert results == [3.0]


def test_a_load_that_no_operation_can_interrupt_is_judged_when_it_returns() -> None:
    guard = guard_of()

    def native() -> None:
        block = bytearray(400 * MiB)  # one native call, as onnxruntime and llama.cpp build a session
        block[::4096] = b"x" * len(block[::4096])

    with pytest.raises(OverReservation):
        guarded(guard, native)


def test_a_guard_already_stopped_refuses_to_open_its_window() -> None:
    guard = guard_of()
    guard.stop("unloaded during load")

    with pytest.raises(LoadCancelled), guard.watching("cpu", RSS):
        pytest.fail("the window opened")


def test_a_real_transformers_load_that_runs_away_is_stopped_and_the_runtime_loads_again(
    demo_models: Path, tmp_path: Path
) -> None:
    folder = inflated_lm(demo_models, tmp_path)  # builds about 400 MiB before it fails
    guard = guard_of(reserved=8 * MiB)
    before = rss()

    try:
        load(LoadSpec(path=str(folder), format="hf", kind="causal-lm", device="cpu", guard=guard))
    except OverReservation as exc:
        free_failed_load(exc, "cpu")
    else:
        pytest.fail("the runaway load was not stopped")

    assert guard.peak_bytes < guard.limit_bytes + 128 * MiB
    assert rss() - before < 128 * MiB
    demo_lm = LoadSpec(path=str(demo_models / "demo-gpt2"), format="hf", kind="causal-lm", device="cpu")
    assert load(demo_lm).generate(
        prompt="The", max_new_tokens=2, temperature=0, top_p=1, stop=[], seed=None, deadline=None
    )["tokens_out"]


def test_a_real_transformers_load_is_stopped_in_the_middle(demo_models: Path, tmp_path: Path) -> None:
    folder = inflated_lm(demo_models, tmp_path, layers=24, hidden=1024)  # seconds of building tensors
    guard = guard_of(reserved=64 * 1024 * MiB)
    spec = LoadSpec(path=str(folder), format="hf", kind="causal-lm", device="cpu", guard=guard)
    threading.Timer(0.5, guard.stop, args=("unloaded during load",)).start()
    started = time.monotonic()

    with pytest.raises(LoadCancelled):
        load(spec)

    assert time.monotonic() - started < 2.0
