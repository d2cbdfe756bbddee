"""Where a job's model goes: the device the worker running the job serves, as torch names it and as a
result describes it. One lookup for every runner (fine-tune, evaluate, benchmark)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from apps.fleet.models import Device
from apps.jobs.models import Job
from apps.serving.worker.device import this_device, torch_device


@dataclass(frozen=True, slots=True)
class Where:
    torch: str  # "cpu" or "cuda:N"
    device: Device | None  # None: a worker that serves no device (the default queue's) runs on its CPU

    @property
    def simulated(self) -> bool:
        """A simulated GPU: its models live in host memory, and its memory is the job's reservation."""
        return self.device is not None and self.device.simulated and self.torch == "cpu"

    def describe(self) -> dict[str, Any]:
        """{label, kind, simulated}: what a benchmark's figures were measured on."""
        if self.device is None:
            return {
                "label": f"{socket.gethostname()}/cpu (no device worker)",
                "kind": "cpu",
                "simulated": False,
            }
        return {"label": str(self.device), "kind": self.device.kind, "simulated": self.device.simulated}


def job_device(job: Job) -> Where:
    """The device of the worker running `job`: a device worker's own (a simulated GPU's models live in
    host memory, so "cpu"); in a process that serves no device (a test running the runner in
    process), the device the dispatcher placed the job on; else this worker's CPU."""
    device = this_device() or job.device
    return Where(torch_device(device) if device is not None else "cpu", device)
