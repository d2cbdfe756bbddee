"""The load guard, for real: torch work in this process is stopped past its limit or on request,
a library's `except Exception` cannot hide that, what it took is freed, and loads it cannot
interrupt are judged when they return. Memory other threads take in passing trips nothing, and a
figure that counts more than the load says so."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from apps.serving.domain.errors import ErrorClass, classify
from apps.serving.runtimes import LoadSpec, load
from apps.serving.runtimes import guard as guard_module
from apps.serving.runtimes.guard import Guard, LoadCancelled, LoadStopped, OverReservation, free_failed_load
from apps.serving.runtimes.memory import DEVICE, RSS
from tests.serving.runaway import inflated_lm

torch = pytest.importorskip("torch")

MiB = 1024**2
GiB = 1024**3
CHUNK = 32 * MiB


@pytest.fixture(autouse=True)
def _collected() -> None:
    """What earlier tests left is collected first: the guard reads the whole process, and memory
    freed while a load runs would hide what the load takes."""
    gc.collect()


def rss() -> int:
    return psutil.Process().memory_info().rss


def guard_of(reserved: int = MiB, *, requests_in_flight: Callable[[], int] = lambda: 0) -> Guard:
    return Guard(
        reserved_bytes=reserved, limit_bytes=reserved + 256 * MiB, requests_in_flight=requests_in_flight
    )


def guarded(guard: Guard, work: Callable[[], None]) -> None:
    """`work` as a runtime runs a load: inside the guard's window."""
    with guard.watching("cpu", RSS):
        work()


@contextmanager
def held_elsewhere(size: int) -> Iterator[None]:
    """Another thread of this process holds `size` bytes of touched memory through the block, as a
    request served beside a load would."""
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        block = bytearray(size)
        block[::4096] = b"x" * len(block[::4096])
        held.set()
        release.wait()
        del block

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    held.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)


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
    assert "over its 1.0 MiB reservation (a load may take up to 257.0 MiB), so it was stopped." in str(
        caught.value
    )
    assert not caught.value.replaceable  # the figure is the load's own: it would run away anywhere
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
    guard, sessions = guard_of(), []

    def native() -> None:
        block = bytearray(400 * MiB)  # one native call, as onnxruntime and llama.cpp build a session
        block[::4096] = b"x" * len(block[::4096])
        sessions.append(block)  # which the runtime keeps

    with pytest.raises(OverReservation, match="so what it built was dropped"):
        guarded(guard, native)


def test_memory_taken_in_passing_by_another_thread_does_not_stop_a_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elsewhere = {"bytes": 0}
    # The process's resident memory, as psutil would read it while another thread's requests come and go.
    monkeypatch.setattr(
        psutil.Process, "memory_info", lambda process: SimpleNamespace(rss=GiB + elsewhere["bytes"])
    )
    guard = guard_of(reserved=8 * MiB)

    def load_beside_passing_requests() -> None:
        for _ in range(5):  # each seen by two samples at most
            time.sleep(0.1)
            elsewhere["bytes"] = 400 * MiB
            time.sleep(0.07)
            elsewhere["bytes"] = 0

    guarded(guard, load_beside_passing_requests)

    guard.check()  # not tripped


def test_an_overrun_seen_while_requests_ran_beside_the_load_says_so_and_may_be_placed_again() -> None:
    guard = guard_of(reserved=8 * MiB, requests_in_flight=lambda: 2)

    def load_while_requests_hold_memory() -> None:
        with held_elsewhere(400 * MiB):
            time.sleep(0.5)

    with pytest.raises(OverReservation) as caught:
        guarded(guard, load_while_requests_hold_memory)

    assert "; the figure counts 2 requests running beside it too, so" in str(caught.value)
    assert caught.value.replaceable


def fake_device(monkeypatch: pytest.MonkeyPatch, used: dict[str, int]) -> None:
    """torch's view of a CUDA device this machine does not have: its free memory follows `used`,
    as other processes and the load move it."""
    total = 80 * 1024 * MiB
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (total - used["bytes"], total))


def test_a_load_measured_by_the_whole_device_is_judged_only_when_its_call_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used = {"bytes": 10 * 1024 * MiB}
    fake_device(monkeypatch, used)
    guard = guard_of(reserved=8 * MiB)

    def native_session() -> None:
        used["bytes"] += 512 * MiB  # another process on the device, for a while
        time.sleep(0.5)
        used["bytes"] -= 512 * MiB - 100 * MiB  # it left; the session kept 100 MiB

    with guard.watching("cuda:0", DEVICE):
        native_session()

    guard.check()  # not tripped


def test_a_load_past_its_limit_by_the_whole_device_may_be_placed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used = {"bytes": 10 * 1024 * MiB}
    fake_device(monkeypatch, used)
    guard = guard_of(reserved=8 * MiB)

    with pytest.raises(OverReservation) as caught, guard.watching("cuda:0", DEVICE):
        used["bytes"] += 1024 * MiB

    assert str(caught.value).startswith("took 1.0 GiB, over its 8.0 MiB reservation")
    assert "the figure counts other processes on the device too, so what it built was dropped" in str(
        caught.value
    )
    assert caught.value.replaceable


def test_a_runtimes_own_error_after_the_stop_is_kept_as_the_cause() -> None:
    guard = guard_of()

    def library_that_replaces_every_error() -> None:
        guard.stop("unloaded during load")
        try:
            torch.ones(1).sum()
        except BaseException as exc:
            raise RuntimeError("the library's clean-up failed") from exc

    with pytest.raises(LoadCancelled) as caught:
        guarded(guard, library_that_replaces_every_error)

    assert isinstance(caught.value.__cause__, RuntimeError)
    assert isinstance(caught.value.__cause__.__cause__, LoadStopped)


def test_a_reading_that_hangs_does_not_hold_the_load_when_its_window_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_module, "JOIN_S", 0.2)
    answer = threading.Event()
    read = psutil.Process.memory_info

    def memory_info(process: psutil.Process) -> Any:
        if threading.current_thread().name == "moc-load-guard":
            answer.wait(10)  # a meter that hangs (a driver's call), until the test ends
        return read(process)

    monkeypatch.setattr(psutil.Process, "memory_info", memory_info)
    guard = guard_of()
    started = time.monotonic()
    try:
        guarded(guard, lambda: time.sleep(0.2))
        took = time.monotonic() - started
    finally:
        answer.set()

    assert took < 1.0


def test_a_guard_already_stopped_refuses_to_open_its_window() -> None:
    guard = guard_of()
    guard.stop("unloaded during load")

    with pytest.raises(LoadCancelled), guard.watching("cpu", RSS):
        pytest.fail("the window opened")


def test_a_real_transformers_load_that_runs_away_is_stopped_and_the_runtime_loads_again(
    demo_models: Path, tmp_path: Path
) -> None:
    folder = inflated_lm(demo_models, tmp_path, layers=24, hidden=1024)  # about 1.2 GiB, over seconds
    guard = guard_of(reserved=8 * MiB)
    before = rss()

    try:
        load(LoadSpec(path=str(folder), format="hf", kind="causal-lm", device="cpu", guard=guard))
    except OverReservation as exc:
        free_failed_load(exc, "cpu")
    else:
        pytest.fail("the runaway load was not stopped")

    assert rss() - before < 128 * MiB
    demo_lm = LoadSpec(path=str(demo_models / "demo-gpt2"), format="hf", kind="causal-lm", device="cpu")
    assert load(demo_lm).generate(
        prompt="The", max_new_tokens=2, temperature=0, top_p=1, stop=[], seed=None, deadline=None
    )["tokens_out"]


def test_transformers_builds_every_tensor_in_the_loading_thread_where_the_stop_reaches(
    demo_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import core_model_loading

    pools: list[Any] = []

    class CountedPool(core_model_loading.ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(core_model_loading, "ThreadPoolExecutor", CountedPool)
    demo_lm = LoadSpec(path=str(demo_models / "demo-gpt2"), format="hf", kind="causal-lm", device="cpu")

    load(demo_lm)

    assert pools == []  # its own pool's threads would carry no stop, and build on after one


def test_a_real_transformers_load_is_stopped_in_the_middle(demo_models: Path, tmp_path: Path) -> None:
    folder = inflated_lm(demo_models, tmp_path, layers=24, hidden=1024)  # seconds of building tensors
    guard = guard_of(reserved=64 * 1024 * MiB)
    spec = LoadSpec(path=str(folder), format="hf", kind="causal-lm", device="cpu", guard=guard)
    threading.Timer(0.5, guard.stop, args=("unloaded during load",)).start()
    started = time.monotonic()

    with pytest.raises(LoadCancelled):
        load(spec)

    assert time.monotonic() - started < 2.0
