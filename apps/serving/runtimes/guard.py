"""The load guard: a load that takes far more than it reserved, or whose placement ended while it
ran, is stopped in the middle, and what it took is freed with the worker alive.

While a runtime builds a model (the window a runtime opens with `watching`), a thread samples what
the load has taken so far by the runtime's own meter (apps.serving.runtimes.memory: the process's
resident memory on the CPU, torch's allocated memory on a GPU) every SAMPLE_S, and trips the guard
once TRIP_AFTER_SAMPLES samples in a row find it past the limit apps.serving.domain.load_guard sets.
The worker trips it too (`stop`) when the placement is unloaded, reaped or lost meanwhile.

What a meter counts besides the load: resident memory and torch's allocator count every thread of
the process, so the worker runs one guarded load at a time (apps.serving.worker.residents), and an
overrun seen while requests ran beside the load says so and may be placed again (`replaceable`),
since part of the figure may be theirs. The device's free memory, by which onnxruntime and llama.cpp
loads on a GPU are measured, counts other processes and the runtime's one-time CUDA set-up as well,
and such a load cannot be stopped anyway (below): it is judged once, when its call returns, net of
the reading before it, and may be placed again.

How a tripped load stops: torch loads (transformers, peft) run every tensor operation through a
TorchFunctionMode in the loading thread (modes are per thread, so requests served by other threads
meanwhile are untouched), which raises LoadStopped at the next operation; loading a model is
thousands of them (the demo LM 459, a 1.2 GB GPT-2 about 4,500), so it stops within one tensor's
work. transformers would build tensors in a thread pool of its own, out of the mode's reach and
finishing after the stop; apps.serving.runtimes.hf turns that pool off. Measured on this project's
2-core machine: the raise comes 10-60 ms after the stop, and the mode costs about 2 us an operation
(the demo LM loads in 21 ms instead of 20, the 1.2 GB GPT-2 from the page cache in 93 ms instead of
85). onnxruntime and llama.cpp build their sessions in one native call that nothing can interrupt:
the guard judges them when the call returns, and the session is dropped. Why not a child process:
the model must end up in the worker that serves it, and a session or a torch module cannot be handed
from one process to another without a second copy of the weights at the peak.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from apps.serving.domain import load_guard
from apps.serving.domain.errors import OutOfMemory, ServingError
from apps.serving.runtimes import memory

log = logging.getLogger(__name__)

SAMPLE_S = 0.05
# A library that catches even a BaseException (rare) gets another one this much later, not at
# every operation its clean-up runs.
RAISE_AGAIN_S = 1.0
# How long a window's end waits for a reading in progress: a meter that hangs (a driver's
# mem_get_info) must not hold the loading thread for good.
JOIN_S = 2.0


class LoadStopped(BaseException):
    """Raised in the loading thread to stop a tripped load. A BaseException, as asyncio's
    CancelledError is: libraries wrap their loading steps in `except Exception` (transformers logs a
    parameter whose conversion raised and carries on) and would swallow an Exception."""


class LoadCancelled(ServingError):
    """The load was stopped because its placement ended while it ran; the message says how."""


class OverReservation(OutOfMemory):
    """The load took more than its reservation allows. Unlike an out-of-memory the device raised,
    loading it elsewhere with the same reservation would only run away again, unless the figure
    counted more than the load (`replaceable`: requests beside it, other processes on the device)."""

    def __init__(self, message: str, *, replaceable: bool = False) -> None:
        super().__init__(message)
        self.replaceable = replaceable


class Guard:
    """One load's guard: its limit, and why it was stopped once it is. `requests_in_flight` counts
    the requests this process serves meanwhile, whose memory the meters count too."""

    def __init__(
        self,
        *,
        reserved_bytes: int,
        limit_bytes: int,
        requests_in_flight: Callable[[], int] = lambda: 0,
    ) -> None:
        self.reserved_bytes = reserved_bytes
        self.limit_bytes = limit_bytes
        self._requests_in_flight = requests_in_flight
        self._lock = threading.Lock()
        self._tripped = threading.Event()
        self._error: ServingError | None = None
        # Past the limit: what the load took, the most requests seen beside it, and whether the
        # meter counts the whole device; made into an OverReservation as the window ends.
        self._overrun: tuple[int, int, bool] | None = None
        self._over_samples = 0  # samples in a row past the limit
        self._requests_beside = 0  # the most requests in flight during those samples
        self._stopped = False  # LoadStopped was raised in the loading thread
        self._raise_at = 0.0  # the loading thread's own: when LoadStopped may be raised (again)

    def stop(self, why: str) -> None:
        """Stop the load (from any thread): its placement ended, `why` says how."""
        with self._lock:
            if not self._tripped.is_set():
                self._error = LoadCancelled(why)
                self._tripped.set()

    def check(self) -> None:
        """Raise why the load was stopped, if it was: for the steps between a runtime's windows."""
        if self._error is not None:
            raise self._error

    @contextmanager
    def watching(self, device: str, meter: str) -> Iterator[None]:
        """The window in which a runtime builds the model: sampled, and stoppable at each tensor
        operation. Raises the guard's error on the way out when it tripped, with what the runtime
        raised meanwhile as its cause."""
        self.check()
        baseline = memory.reading(device, meter)
        window = threading.Event()  # set once the window closed: later readings judge nothing
        sampler = None
        if meter not in memory.DEVICE_WIDE:
            sampler = threading.Thread(
                target=self._sample_until,
                args=(window, device, meter, baseline),
                name="moc-load-guard",
                daemon=True,
            )
            sampler.start()
        grad = _grad_enabled()
        failure: BaseException | None = None
        try:
            with _torch_checks(self):
                yield
        except BaseException as exc:
            if not self._tripped.is_set() or isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            # Tripped: the load stopped (LoadStopped), or failed on its own way out; the guard's
            # reason is why it ended, and the runtime's error is kept as its cause.
            failure = None if isinstance(exc, LoadStopped) else exc
        finally:
            with self._lock:
                window.set()
            if sampler is not None:
                sampler.join(JOIN_S)
                if sampler.is_alive():
                    log.warning(
                        "the load guard's reading of %s took over %.0f s; not waiting for it", device, JOIN_S
                    )
            _restore_grad(grad)
        # Judged once more now the call returned: a load quicker than a sample, and a load on a
        # meter that counts the whole device, which only this reading (net of the one before) judges.
        self._judge(memory.reading(device, meter), baseline, meter, final=True)
        self._settle(failure)
        # What the load built is still held by the frames of the exceptions on the way out;
        # the worker frees it with free_failed_load once it has caught this one.
        self.check()

    def _sample_until(self, window: threading.Event, device: str, meter: str, baseline: int | None) -> None:
        try:
            while not window.wait(SAMPLE_S):
                self._judge(memory.reading(device, meter), baseline, meter, window=window)
        except Exception:  # the load goes on unwatched rather than the worker failing
            log.exception("the load guard could not read %s memory; the load goes on unwatched", device)

    def _judge(
        self,
        now: int | None,
        baseline: int | None,
        meter: str,
        *,
        window: threading.Event | None = None,
        final: bool = False,
    ) -> None:
        """Trip the guard once the load has stayed past its limit for TRIP_AFTER_SAMPLES samples
        (at once for the `final` reading, after the window)."""
        if now is None or baseline is None:
            return
        taken = now - baseline
        requests = self._requests_in_flight() if taken > self.limit_bytes else 0  # outside the lock
        with self._lock:
            if self._tripped.is_set() or (window is not None and window.is_set()):
                return
            if taken <= self.limit_bytes:
                self._over_samples = self._requests_beside = 0
                return
            self._over_samples += 1
            self._requests_beside = max(self._requests_beside, requests)
            if final or self._over_samples >= load_guard.TRIP_AFTER_SAMPLES:
                self._overrun = (taken, self._requests_beside, meter in memory.DEVICE_WIDE)
                self._tripped.set()

    def _settle(self, failure: BaseException | None) -> None:
        """The error a tripped window ends with, its runtime's own error kept as its cause."""
        with self._lock:
            if self._error is None and self._overrun is not None:
                taken, requests, device_wide = self._overrun
                self._error = OverReservation(
                    load_guard.overrun(
                        taken,
                        reserved_bytes=self.reserved_bytes,
                        limit=self.limit_bytes,
                        stopped=self._stopped,
                        requests_beside=requests,
                        device_wide=device_wide,
                    ),
                    replaceable=requests > 0 or device_wide,
                )
            if self._error is not None and failure is not None and self._error.__cause__ is None:
                self._error.__cause__ = failure

    def _should_raise(self) -> bool:
        """In the loading thread, at a tensor operation: whether to raise LoadStopped now."""
        if not self._tripped.is_set():
            return False
        now = time.monotonic()
        if now < self._raise_at:
            return False
        self._raise_at = now + RAISE_AGAIN_S
        self._stopped = True
        return True


def free_failed_load(exc: BaseException, device: str) -> None:
    """Free what a failed load had built: the frames of its exception (and of those it chained)
    still hold the half-built model, so they are cleared before the collector runs, and a GPU's
    cached blocks go back to the driver."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]
    gc.collect()
    memory.release_cached(device)


def watching(guard: Guard | None, device: str, meter: str) -> AbstractContextManager[None]:
    """`guard`'s window for a runtime's load, or nothing for an unguarded one."""
    return nullcontext() if guard is None else guard.watching(device, meter)


def _torch_checks(guard: Guard) -> AbstractContextManager[Any]:
    """A TorchFunctionMode that raises LoadStopped once `guard` trips; nothing where torch is not
    imported (a worker that loads only onnxruntime or llama.cpp models)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return nullcontext()
    return _mode_class(torch)(guard)


_MODE: type | None = None


def _mode_class(torch: Any) -> type:
    """The mode's class, made on first use: defining it needs torch, which this module must not import."""
    global _MODE
    if _MODE is None:
        # Switching grad mode is what `with torch.no_grad()` does on the way in and out: raising
        # there would leave the thread's grad mode wrong (it is restored anyway, see watching()).
        skip = frozenset({torch._C._set_grad_enabled})

        class StopAtNextOperation(torch.overrides.TorchFunctionMode):
            def __init__(self, guard: Guard) -> None:
                super().__init__()
                self.guard = guard

            def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                if func not in skip and self.guard._should_raise():
                    raise LoadStopped
                return func(*args, **(kwargs or {}))

        _MODE = StopAtNextOperation
    return _MODE


def _grad_enabled() -> bool | None:
    torch = sys.modules.get("torch")
    return None if torch is None else bool(torch.is_grad_enabled())


def _restore_grad(enabled: bool | None) -> None:
    """A load stopped in the middle of a library's `no_grad` block must not leave this worker
    thread (which serves requests and jobs next) with gradients switched off."""
    torch = sys.modules.get("torch")
    if enabled is not None and torch is not None:
        torch.set_grad_enabled(enabled)
