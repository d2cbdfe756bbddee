"""How healthy a device is, judged from one reading, and how its recorded health may move.

Pure: the agent calls assess() on each reading and next_step() to move the device's row one
allowed step toward what the reading says, so a GPU that failed earns trust back gradually.
"""

from __future__ import annotations

from typing import Protocol

from .states import DEVICE_HEALTH, DeviceHealth

H = DeviceHealth


class Reading(Protocol):
    """What assess() reads of a device's reading (apps.fleet.devices.base.DeviceReading)."""

    @property
    def error(self) -> str: ...
    @property
    def ecc_uncorrected(self) -> int | None: ...
    @property
    def temperature_c(self) -> float | None: ...


def assess(reading: Reading, *, hot_c: float) -> tuple[DeviceHealth, str]:
    """The health this reading calls for, and the reason an operator sees ("" when healthy)."""
    if reading.error:
        return H.UNHEALTHY, reading.error
    if reading.ecc_uncorrected:
        n = reading.ecc_uncorrected
        return H.UNHEALTHY, f"{n} uncorrectable ECC error{'' if n == 1 else 's'}"
    if reading.temperature_c is not None and reading.temperature_c >= hot_c:
        return H.DEGRADED, f"running hot ({reading.temperature_c:.0f} °C)"
    return H.HEALTHY, ""


def next_step(current: DeviceHealth | str, wanted: DeviceHealth | str) -> DeviceHealth | None:
    """The state to move to now on the way to `wanted`; None when already there.

    The machine forbids only UNHEALTHY -> HEALTHY directly; that way goes through DEGRADED.
    """
    current, wanted = H(current), H(wanted)
    if current == wanted:
        return None
    if DEVICE_HEALTH.can(current, wanted):
        return wanted
    DEVICE_HEALTH.check(current, H.DEGRADED)
    DEVICE_HEALTH.check(H.DEGRADED, wanted)
    return H.DEGRADED
