"""MOC's Celery queue names, all in one place (pure Python).

`default` is the queue every worker setup consumes: work that needs no device (discovery,
validation, housekeeping, CPU jobs). Each device has a queue of its own, consumed only by the
worker that serves it: `<kind>.<node>.<index>`, e.g. gpu.node1.0 or cpu.laptop.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Queue(StrEnum):
    DEFAULT = "default"


# The kinds of device that have queues (apps.fleet.domain.kinds.DeviceKind's values).
DEVICE_KINDS = frozenset({"gpu", "cpu"})


def device_queue(kind: str, node: str, index: int) -> str:
    """A device's own Celery queue, e.g. gpu.node1.0: its worker consumes only that."""
    return f"{kind}.{node}.{index}"


def parse_device_queue(queue: str) -> tuple[str, str, int] | None:
    """(kind, node, index) of a device queue, or None for any other queue (e.g. `default`)."""
    parts = queue.split(".")
    if len(parts) != 3 or parts[0] not in DEVICE_KINDS or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def node_device_queues(queues: Iterable[str], node: str) -> list[tuple[str, str, int]]:
    """(kind, node, index) of each of `queues` that is a device queue of `node`, in order."""
    return [parsed for q in queues if (parsed := parse_device_queue(q)) and parsed[1] == node]
