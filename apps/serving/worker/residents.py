"""The models this worker process holds in memory, by placement id.

One worker process serves one device (its own queue, a thread pool), so what is loaded lives
here, in the process, and requests for it come to this process's queue. Requests count as
in flight while they use a model; unloading stops new ones and waits for those in flight
(drains) before the model is freed, so an unload never pulls weights from under a request.

One load runs at a time in the process (`start_loading`): what a load takes is read from meters
that count the whole process (its resident memory, torch's allocator), so two loads at once would
each be charged for the other, by the load guard and in the bytes they record as measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.serving.domain.errors import DeviceLost

if TYPE_CHECKING:
    from apps.serving.runtimes import Loaded
    from apps.serving.runtimes.guard import Guard


class NotResident(DeviceLost):
    """The placement is not in this worker's memory: the worker restarted, or it is unloading."""


@dataclass
class _Entry:
    loaded: Loaded
    idle: threading.Condition  # on the registry's lock: in-flight counts change only under it
    inflight: int = 0
    closing: bool = False


class Residents:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._loading: dict[int, Guard] = {}
        self._load_slot = threading.Lock()  # held by the one load running in this process

    def add(self, placement_id: int, loaded: Loaded) -> None:
        with self._lock:
            self._entries[placement_id] = _Entry(loaded, threading.Condition(self._lock))

    def get(self, placement_id: int) -> Loaded | None:
        entry = self._entries.get(placement_id)
        return None if entry is None or entry.closing else entry.loaded

    def ids(self) -> list[int]:
        return sorted(self._entries)

    def start_loading(self, placement_id: int, guard: Guard, *, wait_s: float) -> bool:
        """Take the process's load slot for the placement, waiting up to `wait_s` for the load that
        holds it, and mark the load in progress, so an unload arriving meanwhile can stop it through
        its guard. False when another load (or a second one of the same placement) still holds it;
        after True, end_loading must follow."""
        if placement_id in self._loading or not self._load_slot.acquire(timeout=wait_s):
            return False
        with self._lock:
            self._loading[placement_id] = guard
        return True

    def end_loading(self, placement_id: int, guard: Guard) -> None:
        """The load start_loading let in has ended: its mark goes, and the next load may start."""
        with self._lock:
            if self._loading.get(placement_id) is guard:
                del self._loading[placement_id]
        self._load_slot.release()

    def is_loading(self, placement_id: int) -> bool:
        return placement_id in self._loading

    def in_flight(self) -> int:
        """Requests using any model of this process now."""
        with self._lock:
            return sum(entry.inflight for entry in self._entries.values())

    def stop_loading(self, placement_id: int, why: str) -> bool:
        """Stop the placement's load, if one runs here: it ends within a tensor operation (see
        apps.serving.runtimes.guard) and frees what it took. False when none runs."""
        guard = self._loading.get(placement_id)
        if guard is None:
            return False
        guard.stop(why)
        return True

    @contextmanager
    def use(self, placement_id: int) -> Iterator[Loaded]:
        with self._lock:
            entry = self._entries.get(placement_id)
            if entry is None or entry.closing:
                why = (
                    "is being unloaded"
                    if entry
                    else "is not in this worker's memory (did the worker restart?)"
                )
                raise NotResident(f"placement {placement_id} {why}")
            entry.inflight += 1
        try:
            yield entry.loaded
        finally:
            with self._lock:
                entry.inflight -= 1
                entry.idle.notify_all()

    def drain(self, placement_id: int, *, drain_s: float) -> tuple[bool, int]:
        """Stop new requests and wait up to `drain_s` for those in flight: (whether it was here,
        requests still in flight when the wait ended)."""
        deadline = time.monotonic() + drain_s
        with self._lock:
            entry = self._entries.get(placement_id)
            if entry is None:
                return False, 0
            entry.closing = True
            while entry.inflight and (left := deadline - time.monotonic()) > 0:
                entry.idle.wait(left)
            return True, entry.inflight

    def remove(self, placement_id: int, *, drain_s: float) -> tuple[Loaded | None, int]:
        """Drain, then hand the model over to be closed: (the model or None if it was not here,
        requests still in flight when the wait ended)."""
        _, still_running = self.drain(placement_id, drain_s=drain_s)
        with self._lock:
            entry = self._entries.pop(placement_id, None)
        return (entry.loaded if entry else None), still_running


RESIDENTS = Residents()
