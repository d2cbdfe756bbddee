"""The device layer: how a node's GPUs (or its CPU, or simulated GPUs) are found and read.

Pure Python with no Django, so the agent, the sampler bench and the tests share it. Choose
a backend with open_backend(MOC_DEVICES, …); every backend speaks DeviceBackend.
"""

from .base import (
    BackendUnavailable,
    DeviceBackend,
    DeviceInfo,
    DeviceReading,
    NodeInfo,
    ProcessUse,
    SimLoad,
)
from .select import open_backend, parse_spec

__all__ = [
    "BackendUnavailable",
    "DeviceBackend",
    "DeviceInfo",
    "DeviceReading",
    "NodeInfo",
    "ProcessUse",
    "SimLoad",
    "open_backend",
    "parse_spec",
]
