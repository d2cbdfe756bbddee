"""Which device this worker process serves: set once the worker has started serving."""

from __future__ import annotations

import os

from apps.fleet.models import Device
from apps.serving.placing.devices import in_host_memory

_device_id: int | None = None


def device_id() -> int | None:
    return _device_id


def set_device_id(pk: int) -> None:
    global _device_id
    _device_id = pk


def this_device() -> Device | None:
    """The device this worker process serves (set when it started), or None for other workers."""
    return Device.objects.select_related("node").filter(pk=_device_id).first() if _device_id else None


def torch_device(device: Device) -> str:
    """Where this worker puts weights. A real GPU worker sees one GPU (CUDA_VISIBLE_DEVICES pins it,
    as compose and scripts/run.sh do), else it addresses its GPU by NVML index. Simulated GPUs and
    CPU devices hold weights in host memory (apps.serving.placing.devices.in_host_memory)."""
    if in_host_memory(device):
        return "cpu"
    return "cuda:0" if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() else f"cuda:{device.index}"
