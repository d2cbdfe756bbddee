"""The load guard: a load that takes far more than it reserved, or whose placement ended while it
ran, is stopped in the middle, and what it took is freed with the worker alive.

While a runtime builds a model (the window a runtime opens with `watching`), a thread samples what
the load has taken so far by the runtime's own meter (apps.serving.runtimes.memory: the process's
resident memory on the CPU, torch's allocated memory on a GPU) every SAMPLE_S, and trips the guard
once it passes the limit apps.serving.domain.load_guard sets. The worker trips it too (`stop`) when
the placement is unloaded, reaped or lost meanwhile.

How a tripped load stops: torch loads (transformers, peft) run every tensor operation through a
TorchFunctionMode in the loading thread (modes are per thread, so requests served by other threads
meanwhile are untouched), which raises LoadStopped at the next operation; loading a model is
thousands of them (the demo LM 459, a 1.2 GB GPT-2 about 4,500), so it stops within one tensor's
work. Measured on this project's 2-core machine: the raise comes 10-60 ms after the stop, and the
mode costs about 2 us an operation (the demo LM loads in 21 ms instead of 20, the 1.2 GB GPT-2 from
the page cache in 93 ms instead of 85). onnxruntime and llama.cpp build their sessions in one
native call that nothing can interrupt: the guard judges them when the call returns, and the session
is dropped. Why not a child process: the model must end up in the worker that serves it, and a
session or a torch module cannot be handed from one process to another without a second copy of the
weights at the peak.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from apps.serving.domain import load_guard
from apps.serving.domain.errors import OutOfMemory, ServingError
from apps.serving.runtimes import memory

log = logging.getLogger(__name__)

SAMPLE_S = 0.1
# A library that catches even a BaseException (rare) gets another one this much later, not at
# every operation its clean-up runs.
RAISE_AGAIN_S = 1.0


class LoadStopped(BaseException):
    """Raised in the loading thread to stop a tripped load. A BaseException, as asyncio's
    CancelledError is: libraries wrap their loading steps in `except Exception` (transformers logs a
    parameter whose conversion raised and carries on) and would swallow an Exception."""


class LoadCancelled(ServingError):
    """The load was stopped because its placement ended while it ran; the message says how."""


class OverReservation(OutOfMemory):
    """The load took more than its reservation allows. Unlike an out-of-memory the device raised,
    loading it elsewhere with the same reservation would only run away again."""


class Guard:
    """One load's guard: its limit, and why it was stopped once it is."""

    def __init__(self, *, reserved_bytes: int, limit_bytes: int) -> None:
        self.reserved_bytes = reserved_bytes
        self.limit_bytes = limit_bytes
        self.peak_bytes = 0  # the most the load was seen to take
        self._lock = threading.Lock()
        self._error: ServingError | None = None
        self._tripped = threading.Event()
        self._raise_at = 0.0  # the loading thread's own: when LoadStopped may be raised (again)

    def stop(self, why: str) -> None:
        """Stop the load (from any thread): its placement ended, `why` says how."""
        self._trip(LoadCancelled(why))

    def check(self) -> None:
        """Raise why the load was stopped, if it was: for the steps between a runtime's windows."""
        if self._error is not None:
            raise self._error

    @contextmanager
    def watching(self, device: str, meter: str) -> Iterator[None]:
        """The window in which a runtime builds the model: sampled, and stoppable at each tensor
        operation. Raises the guard's error on the way out when it tripped, whatever the runtime
        raised meanwhile."""
        self.check()
        baseline = memory.reading(device, meter)
        done = threading.Event()
        sampler = threading.Thread(
            target=self._sample_until,
            args=(done, device, meter, baseline),
            name="moc-load-guard",
            daemon=True,
        )
        sampler.start()
        grad = _grad_enabled()
        try:
            with _torch_checks(self):
                yield
        except BaseException as exc:
            if self._error is None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            # Tripped: the load stopped (LoadStopped) or failed on its way out; the guard's reason
            # is why it ended.
        finally:
            done.set()
            sampler.join()
            _restore_grad(grad)
        self._sample(device, meter, baseline)  # a load quicker than a sample is judged too
        # What the load built is still held by the frames of the exceptions on the way out;
        # the worker frees it with free_failed_load once it has caught this one.
        self.check()

    def _trip(self, error: ServingError) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
                self._tripped.set()

    def _sample_until(self, done: threading.Event, device: str, meter: str, baseline: int | None) -> None:
        try:
            while not done.wait(SAMPLE_S):
                self._sample(device, meter, baseline)
        except Exception:  # the load goes on unwatched rather than the worker failing
            log.exception("the load guard could not read %s memory; the load goes on unwatched", device)

    def _sample(self, device: str, meter: str, baseline: int | None) -> None:
        now = memory.reading(device, meter)
        if now is None or baseline is None:
            return
        taken = now - baseline
        self.peak_bytes = max(self.peak_bytes, taken)
        why = load_guard.overrun(taken, reserved_bytes=self.reserved_bytes, limit=self.limit_bytes)
        if why is not None:
            self._trip(OverReservation(why))

    def _should_raise(self) -> bool:
        """In the loading thread, at a tensor operation: whether to raise LoadStopped now."""
        if not self._tripped.is_set():
            return False
        now = time.monotonic()
        if now < self._raise_at:
            return False
        self._raise_at = now + RAISE_AGAIN_S
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
