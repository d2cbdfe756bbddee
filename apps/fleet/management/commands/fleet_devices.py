"""Show the devices this node offers under the current MOC_DEVICES, or their queue names.

scripts/run.sh uses `--queues` to start one worker per device when MOC_DEVICE_QUEUES is unset, and
`--touch` just before it starts them: a node stopped for longer than MOC_NODE_OFFLINE_AFTER_S still
reads online with an old heartbeat, and beat's first sweep would call it lost (a NodeLost alert, its
placements lost) in the seconds before its workers register again.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.core.domain.queues import device_queue
from apps.fleet.agent import open_node_backend
from apps.fleet.registration import node_heartbeat


class Command(BaseCommand):
    help = "List this node's devices as MOC_DEVICES finds them (or print their queue names)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", action="store_true", help="Print the device queues, comma-separated")
        parser.add_argument(
            "--touch",
            action="store_true",
            help="Mark this node seen now (when it is registered), so its workers have the offline "
            "window to register on a restart",
        )

    def handle(self, *args: Any, queues: bool = False, touch: bool = False, **options: Any) -> None:
        if touch:
            state = node_heartbeat(name=settings.MOC_NODE_NAME)
            self.stdout.write(f"node {settings.MOC_NODE_NAME}: {state or 'not registered yet'}")
            return
        backend, reason = open_node_backend()
        try:
            devices = backend.devices()
        finally:
            backend.close()
        names = [device_queue(d.kind, settings.MOC_NODE_NAME, d.index) for d in devices]
        if queues:
            self.stdout.write(",".join(names))
            return
        self.stdout.write(f"node {settings.MOC_NODE_NAME}: {reason}")
        gib = 1024**3
        for name, d in zip(names, devices, strict=True):
            label = " (simulated)" if d.simulated else ""
            self.stdout.write(
                f"  {name:<24} {d.name}{label}  {d.memory_total_bytes / gib:.1f} GiB,"
                f" MOC may use {d.capacity_bytes / gib:.1f} GiB  {d.uuid}"
            )
