"""Device health: what one reading says, and the steps a device's recorded health takes."""

from __future__ import annotations

import pytest

from apps.fleet.devices.base import DeviceReading
from apps.fleet.domain.health import assess, next_step
from apps.fleet.domain.states import DEVICE_HEALTH, DeviceHealth

H = DeviceHealth
GiB = 1024**3


def _reading(
    *, error: str = "", temperature_c: float | None = 60.0, ecc_uncorrected: int | None = 0
) -> DeviceReading:
    return DeviceReading(
        index=0,
        uuid="GPU-1",
        gpu_util=50.0,
        mem_util=20.0,
        mem_total_bytes=80 * GiB,
        mem_used_bytes=10 * GiB,
        mem_free_bytes=70 * GiB,
        temperature_c=temperature_c,
        power_w=300.0,
        power_limit_w=700.0,
        sm_clock_mhz=1980,
        mem_clock_mhz=2619,
        fan_pct=None,
        pcie_tx_bytes_s=None,
        pcie_rx_bytes_s=None,
        ecc_corrected=4,
        ecc_uncorrected=ecc_uncorrected,
        error=error,
    )


@pytest.mark.parametrize(
    ("reading", "verdict"),
    [
        (_reading(), (H.HEALTHY, "")),
        (_reading(temperature_c=None, ecc_uncorrected=None), (H.HEALTHY, "")),
        (_reading(temperature_c=84.9), (H.HEALTHY, "")),
        (_reading(temperature_c=85.0), (H.DEGRADED, "running hot (85 °C)")),
        (_reading(temperature_c=91.4), (H.DEGRADED, "running hot (91 °C)")),
        (_reading(ecc_uncorrected=1), (H.UNHEALTHY, "1 uncorrectable ECC error")),
        (_reading(ecc_uncorrected=3, temperature_c=95.0), (H.UNHEALTHY, "3 uncorrectable ECC errors")),
        (
            DeviceReading.failed(0, "GPU-1", 80 * GiB, "memory info: GPU is lost"),
            (H.UNHEALTHY, "memory info: GPU is lost"),
        ),
    ],
)
def test_assess_judges_a_reading_by_error_then_ecc_then_heat(
    reading: DeviceReading, verdict: tuple[DeviceHealth, str]
) -> None:
    assert assess(reading, hot_c=85.0) == verdict


def test_assess_uses_the_configured_hot_threshold() -> None:
    assert assess(_reading(temperature_c=70.0), hot_c=70.0) == (H.DEGRADED, "running hot (70 °C)")


@pytest.mark.parametrize(
    ("current", "wanted", "step"),
    [
        (H.HEALTHY, H.HEALTHY, None),
        (H.UNHEALTHY, H.UNHEALTHY, None),
        (H.HEALTHY, H.DEGRADED, H.DEGRADED),
        (H.HEALTHY, H.UNHEALTHY, H.UNHEALTHY),
        (H.DEGRADED, H.HEALTHY, H.HEALTHY),
        (H.DEGRADED, H.UNHEALTHY, H.UNHEALTHY),
        (H.UNHEALTHY, H.DEGRADED, H.DEGRADED),
        (H.UNHEALTHY, H.HEALTHY, H.DEGRADED),
        (H.UNAVAILABLE, H.HEALTHY, H.HEALTHY),
        (H.UNAVAILABLE, H.UNHEALTHY, H.UNHEALTHY),
        (H.HEALTHY, H.UNAVAILABLE, H.UNAVAILABLE),
    ],
)
def test_next_step_moves_one_allowed_step_toward_the_wanted_health(
    current: DeviceHealth, wanted: DeviceHealth, step: DeviceHealth | None
) -> None:
    assert next_step(current, wanted) == step


def test_next_step_takes_health_as_stored_in_the_database() -> None:
    assert next_step("unhealthy", "healthy") == H.DEGRADED


@pytest.mark.parametrize("current", list(H))
@pytest.mark.parametrize("wanted", list(H))
def test_next_step_reaches_any_health_from_any_other_in_allowed_moves(
    current: DeviceHealth, wanted: DeviceHealth
) -> None:
    state, moves = current, 0
    while (step := next_step(state, wanted)) is not None:
        DEVICE_HEALTH.check(state, step)
        state, moves = step, moves + 1

    assert state == wanted
    assert moves <= 2


def test_next_step_refuses_a_health_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match="'broken' is not a valid DeviceHealth"):
        next_step(H.HEALTHY, "broken")
