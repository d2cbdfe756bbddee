"""Where a job's model goes: the device this worker serves, as torch names it, and as a result
describes it."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from apps.fleet.models import Device
from apps.serving.worker.device import this_device, torch_device


@dataclass(frozen=True, slots=True)
class Where:
    torch: str  # "cpu" or "cuda:N"
    device: Device | None  # None: a worker that serves no device (the default queue's) runs on its CPU

    def describe(self) -> dict[str, Any]:
        """{label, kind, simulated}: what a benchmark's figures were measured on."""
        if self.device is None:
            return {
                "label": f"{socket.gethostname()}/cpu (no device worker)",
                "kind": "cpu",
                "simulated": False,
            }
        return {"label": str(self.device), "kind": self.device.kind, "simulated": self.device.simulated}


def job_device() -> Where:
    """The device of the worker running the job: a device worker's own (a simulated GPU's models
    live in host memory, so "cpu"), else this worker's CPU."""
    device = this_device()
    return Where(torch_device(device) if device is not None else "cpu", device)
