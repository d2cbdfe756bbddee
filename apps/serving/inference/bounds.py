"""How many of this process's threads may wait on devices at once (MOC_SERVING_WAITING_PER_PROCESS
in all, MOC_SERVING_WAITING_PER_QUEUE on one device's queue), so that a burst for slow or dead
devices leaves the web server threads for everything else. One count per process (`waiting`),
kept apart from the request flow that takes and gives back its places."""

from __future__ import annotations

import threading

from django.conf import settings


class _Waiting:
    """How many of this process's threads wait on devices: in all, bounded by
    MOC_SERVING_WAITING_PER_PROCESS, and on each device queue, by MOC_SERVING_WAITING_PER_QUEUE.
    Per process, because what it guards is this process's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all = 0
        self._count: dict[str, int] = {}

    def enter(self) -> bool:
        """Take a place among all the waiting; False when they are at their bound already."""
        with self._lock:
            if self._all >= settings.MOC_SERVING_WAITING_PER_PROCESS:
                return False
            self._all += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._all = max(0, self._all - 1)

    def enter_queue(self, queue: str) -> bool:
        """Take a place waiting on `queue`; False when it has its bound already."""
        with self._lock:
            count = self._count.get(queue, 0)
            if count >= settings.MOC_SERVING_WAITING_PER_QUEUE:
                return False
            self._count[queue] = count + 1
            return True

    def leave_queue(self, queue: str) -> None:
        with self._lock:
            count = self._count.get(queue, 0) - 1
            if count > 0:
                self._count[queue] = count
            else:
                self._count.pop(queue, None)


waiting = _Waiting()
